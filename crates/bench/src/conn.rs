//! Connections of a run, as etcd's benchmark makes them: `--conns` gRPC connections handed
//! out round-robin over `--endpoints` (or all to the leader with `--target-leader`), clients
//! sharing them in turn; an auth token every request carries.

use rustcd_api::etcdserverpb::cluster_client::ClusterClient;
use rustcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use rustcd_api::etcdserverpb::{MemberListRequest, StatusRequest};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

pub type Token = Option<MetadataValue<Ascii>>;

/// `m` as a request carrying the run's auth token.
pub fn with_token<T>(m: T, token: &Token) -> tonic::Request<T> {
    let mut r = tonic::Request::new(m);
    if let Some(t) = token {
        r.metadata_mut().insert("token", t.clone());
    }
    r
}

/// `conns` channels over `endpoints` in turn, or every one to the leader's first client URL.
pub async fn connect(endpoints: &[String], conns: usize, target_leader: bool) -> Result<Vec<Channel>, String> {
    let leader;
    let endpoints = if target_leader {
        leader = vec![leader_endpoint(endpoints).await?];
        &leader
    } else {
        endpoints
    };
    let mut channels = Vec::new();
    for i in 0..conns.max(1) {
        channels.push(rustcd_cluster::probe::connect(&endpoints[i % endpoints.len()]).await?);
    }
    Ok(channels)
}

/// The leader's client endpoint (`host:port`): the first member that answers Status names the
/// leader, the member list its URLs.
pub async fn leader_endpoint(endpoints: &[String]) -> Result<String, String> {
    for ep in endpoints {
        let Ok(ch) = rustcd_cluster::probe::connect(ep).await else { continue };
        let Ok(status) = MaintenanceClient::new(ch.clone()).status(StatusRequest {}).await else { continue };
        let leader = status.into_inner().leader;
        let members = ClusterClient::new(ch).member_list(MemberListRequest::default()).await;
        let members = members.map_err(|e| format!("member list from {ep}: {}", e.message()))?.into_inner().members;
        let url = members.iter().find(|m| m.id == leader).and_then(|m| m.client_ur_ls.first());
        return match url {
            Some(u) => Ok(u.split("://").last().unwrap_or(u).trim_end_matches('/').to_string()),
            None => Err(format!("failed to find a leader endpoint (leader {leader:x})")),
        };
    }
    Err("failed to find a leader endpoint: no endpoint answered".into())
}
