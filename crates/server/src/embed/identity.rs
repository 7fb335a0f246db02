//! A member's identity: its member ID and its cluster's ID, decided once (from the initial
//! cluster for a new member, from the existing members' answer when joining) and kept in
//! `member/identity`, so that a restart never re-derives them.

use std::path::Path;
use std::time::Duration;

use rustcd_api::rustcdpb::StoredMember;

use rustcd_mvcc::KvStore;

use crate::config::Config;
use crate::error::StartError;
use crate::etcdserver::membership::{Membership, from_json};
use rustcd_schema::{datadir, ids};

/// Who this member is and what cluster it belongs to.
pub struct Identity {
    pub member_id: u64,
    pub cluster_id: u64,
    pub members: Vec<StoredMember>,
    /// Bootstrap a new raft log with these members (new cluster, first start).
    pub bootstrap: bool,
}

/// Finds this member's identity: from its data dir on restart, from the initial cluster for
/// a new one, or from the existing members' answer when joining.
pub async fn identify(
    cfg: &Config,
    member_dir: &Path,
    store: &KvStore,
    peer_tls: Option<&std::sync::Arc<rustcd_tls::ClientConfig>>,
) -> Result<Identity, StartError> {
    let token = &cfg.raw.initial_cluster_token;
    let data_dir_error = |e: std::io::Error| StartError::DataDir(e.to_string());
    if let Some((member_id, cluster_id)) = datadir::read_identity(member_dir).map_err(data_dir_error)? {
        let members = Membership::load(store).map(|m| m.members).unwrap_or_else(|| initial_members(cfg, token));
        // A member `snapshot restore` made starts its raft log from the restored membership.
        let bootstrap = datadir::is_restored(member_dir);
        return Ok(Identity { member_id, cluster_id, members, bootstrap });
    }
    let id = if cfg.raw.initial_cluster_state == "existing" {
        join_existing(cfg, peer_tls).await?
    } else if !cfg.raw.discovery.is_empty() {
        discover(cfg).await?
    } else {
        let members = initial_members(cfg, token);
        let member_id = members.iter().find(|m| m.name == cfg.raw.name).map(|m| m.id).unwrap_or(0);
        let cluster_id = ids::cluster_id(&members.iter().map(|m| m.id).collect::<Vec<_>>());
        Identity { member_id, cluster_id, members, bootstrap: true }
    };
    datadir::write_identity(member_dir, id.member_id, id.cluster_id).map_err(data_dir_error)?;
    Ok(id)
}

fn initial_members(cfg: &Config, token: &str) -> Vec<StoredMember> {
    cfg.initial_cluster
        .iter()
        .map(|m| StoredMember {
            id: ids::member_id(&m.peer_urls, token),
            name: m.name.clone(),
            peer_urls: m.peer_urls.clone(),
            client_urls: vec![],
            is_learner: false,
        })
        .collect()
}

/// etcd's v2 discovery: the initial cluster is whoever registered at the discovery URL, and
/// the URL is the cluster token member IDs are computed with.
async fn discover(cfg: &Config) -> Result<Identity, StartError> {
    let durl = &cfg.raw.discovery;
    let member_id = ids::member_id(&cfg.advertise_peer_urls, durl);
    let me: Vec<String> = cfg.advertise_peer_urls.iter().map(|u| format!("{}={u}", cfg.raw.name)).collect();
    let joined =
        crate::embed::discovery_v2::join_cluster(durl, &cfg.raw.discovery_proxy, member_id, &me.join(",")).await;
    let cluster = match joined {
        Ok(c) => c,
        Err(crate::embed::discovery_v2::DiscoveryError::FullCluster) if cfg.raw.discovery_fallback == "proxy" => {
            tracing::info!(fallback_proxy = "proxy", "discovery cluster is full, falling back to proxy");
            return Err(StartError::FallBackToProxy);
        }
        Err(e) => return Err(StartError::Config(discovery_failure(cfg, &e))),
    };
    let initial = crate::config::parse_initial_cluster(&cluster)?;
    let members: Vec<StoredMember> = initial
        .iter()
        .map(|m| StoredMember {
            id: ids::member_id(&m.peer_urls, durl),
            name: m.name.clone(),
            peer_urls: m.peer_urls.clone(),
            client_urls: vec![],
            is_learner: false,
        })
        .collect();
    let mut urls: Vec<&String> = members.iter().flat_map(|m| &m.peer_urls).collect();
    urls.sort();
    if urls.windows(2).any(|w| w[0] == w[1]) {
        return Err(StartError::Config(format!("discovery cluster {cluster} has duplicate url")));
    }
    let cluster_id = ids::cluster_id(&members.iter().map(|m| m.id).collect::<Vec<_>>());
    Ok(Identity { member_id, cluster_id, members, bootstrap: true })
}

/// What etcd says when discovery fails, as one line.
fn discovery_failure(cfg: &Config, e: &crate::embed::discovery_v2::DiscoveryError) -> String {
    use crate::embed::discovery_v2::DiscoveryError as D;
    match e {
        D::DuplicateId => {
            tracing::warn!(discovery_url = %cfg.raw.discovery, "member has been registered with discovery service");
            format!(
                "{e}: the member was registered before but its data dir has no cluster configuration; use a new discovery token if the previous bootstrap failed"
            )
        }
        D::DuplicateName => format!("{e}: a member with the same name has already been registered"),
        _ => {
            tracing::warn!(discovery_token = %cfg.raw.discovery, error = %e, "failed to bootstrap; discovery token was already used");
            format!("{e}")
        }
    }
}

/// Asks the other members for the member list and finds this member in it by peer URLs.
async fn join_existing(
    cfg: &Config,
    peer_tls: Option<&std::sync::Arc<rustcd_tls::ClientConfig>>,
) -> Result<Identity, StartError> {
    let mut mine = cfg.advertise_peer_urls.clone();
    mine.sort();
    for m in cfg.initial_cluster.iter().filter(|m| m.name != cfg.raw.name) {
        let Ok((cluster_id, listed)) =
            rustcd_peer::rafthttp::client::members(&m.peer_urls, peer_tls, Duration::from_secs(2)).await
        else {
            continue;
        };
        let members: Vec<StoredMember> = listed.into_iter().map(from_json).collect();
        let found = members.iter().find(|x| {
            let mut urls = x.peer_urls.clone();
            urls.sort();
            urls == mine
        });
        return match found {
            Some(me) => Ok(Identity { member_id: me.id, cluster_id, members: members.clone(), bootstrap: false }),
            None => Err(StartError::Config(format!(
                "error validating peerURLs: member count is unequal or this member's peer URLs {mine:?} were not added to the cluster (use 'etcdctl member add' first)"
            ))),
        };
    }
    Err(StartError::Config(
        "cannot fetch cluster info from peer urls: could not retrieve cluster information from the given URLs".into(),
    ))
}
