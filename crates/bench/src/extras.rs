//! The figures around the load table: each member's RSS after many puts, the time a loaded
//! member takes to restart, leader failover; and turning auth on for `compare --auth`.

use std::time::{Duration, Instant};

use rustcd_api::etcdserverpb::PutRequest;
use rustcd_api::etcdserverpb::kv_client::KvClient;
use rustcd_cluster::{Cluster, Server, leader_index, wait_for};

use crate::backup;
use crate::load::{self, Params};

/// Turns authentication on (root, and a user `bench` whose role may read and write every
/// key) and returns `bench`'s token.
pub async fn enable_auth(endpoint: &str) -> String {
    use rustcd_api::etcdserverpb::auth_client::AuthClient;
    use rustcd_api::etcdserverpb::*;
    let mut a = AuthClient::new(rustcd_cluster::channel(endpoint).await);
    for user in ["root", "bench"] {
        let add = AuthUserAddRequest { name: user.into(), password: "pw".into(), ..Default::default() };
        a.user_add(add).await.expect("user add");
    }
    a.user_grant_role(AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() }).await.expect("root role");
    a.role_add(AuthRoleAddRequest { name: "bench".into() }).await.expect("role add");
    let every_key = rustcd_api::authpb::Permission { perm_type: 2, key: vec![0].into(), range_end: vec![0].into() };
    let grant = AuthRoleGrantPermissionRequest { name: "bench".into(), perm: Some(every_key) };
    a.role_grant_permission(grant).await.expect("grant");
    a.user_grant_role(AuthUserGrantRoleRequest { user: "bench".into(), role: "bench".into() }).await.expect("grant");
    a.auth_enable(AuthEnableRequest {}).await.expect("auth enable");
    let auth = AuthenticateRequest { name: "bench".into(), password: "pw".into() };
    a.authenticate(auth).await.expect("authenticate").into_inner().token
}

/// RSS of each member of a 3-member cluster after `puts` puts (1000 clients), both servers.
pub async fn rss_after_puts(puts: usize, key_size: usize, val_size: usize) {
    let p = Params { clients: 1000, conns: 100, total: puts, key_size, val_size, key_space: puts, ..Params::default() };
    let mut rss = Vec::new();
    for server in [Server::Rustcd, Server::Etcd] {
        let c = Cluster::start_with(server, 3, &[]);
        c.wait_writable(0);
        rss.push(load::run(&c, &p).await.rss_mib);
    }
    println!(
        "max member RSS after {puts} puts, 3 members: rustcd {:.1} MiB, etcd {:.1} MiB, ratio {:.2}",
        rss[0],
        rss[1],
        rss[0] / rss[1]
    );
}

/// One member loaded with `keys` keys, stopped gracefully, started again: time until its first
/// served read.
pub async fn restart_time(keys: usize, val_size: usize) {
    let mut times = Vec::new();
    for server in [Server::Rustcd, Server::Etcd] {
        let mut c = Cluster::start_with(server, 1, &[]);
        c.wait_writable(0);
        backup::fill(&c, keys, val_size).await;
        c.kill(0, libc::SIGTERM);
        let started = Instant::now();
        c.restart(0);
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "restart with {keys} keys to first served read, 1 member: rustcd {:.0} ms, etcd {:.0} ms, ratio {:.2}",
        times[0],
        times[1],
        times[0] / times[1]
    );
}

/// Sorted failover times in milliseconds.
pub async fn failover(server: Server, members: usize, rounds: usize, sig: i32) -> Vec<f64> {
    let mut c = Cluster::start_with(server, members, &[]);
    c.wait_writable(0);
    let mut times = Vec::new();
    for round in 0..rounds {
        let leader = wait_for("a leader", Duration::from_secs(20), || leader_index(&c));
        let survivors: Vec<String> = (0..members).filter(|i| *i != leader).map(|i| c.members[i].endpoint()).collect();
        let started = Instant::now();
        c.kill(leader, sig);
        first_put(&survivors, round).await;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        c.restart(leader);
        c.wait_writable(leader);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    times
}

/// Puts through the survivors in turn until one succeeds.
async fn first_put(endpoints: &[String], round: usize) {
    let mut i = 0;
    loop {
        let ep = tonic::transport::Endpoint::from_shared(format!("http://{}", endpoints[i % endpoints.len()]))
            .expect("endpoint")
            .connect_timeout(Duration::from_millis(200))
            .timeout(Duration::from_millis(500));
        if let Ok(ch) = ep.connect().await {
            let put = PutRequest {
                key: format!("failover/{round}").into_bytes().into(),
                value: b"1".to_vec().into(),
                ..Default::default()
            };
            if KvClient::new(ch).put(put).await.is_ok() {
                return;
            }
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
