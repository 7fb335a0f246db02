//! The faults `verify` injects into members that run on this machine: signals to their
//! processes (found from their client ports, or given), restarts by the operator's command, and
//! a TCP proxy in front of each peer port for partitions and delays.

use std::time::Duration;

use rustcd_api::etcdserverpb::StatusRequest;
use rustcd_api::etcdserverpb::maintenance_client::MaintenanceClient;
use rustcd_cluster::proxy::{self, Proxy};

/// A fault, as `--faults` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// SIGKILL the leader, then start it again (--restart-cmd)
    KillLeader,
    /// SIGKILL a follower, then start it again
    KillFollower,
    /// SIGKILL a minority of the members (followers), then start them again
    KillMinority,
    /// SIGSTOP the leader, then SIGCONT
    StopLeader,
    /// SIGSTOP a follower, then SIGCONT
    StopFollower,
    /// SIGSTOP a minority of the members (followers), then SIGCONT
    StopMinority,
    /// Drop everything the leader's peers send it (its peer proxy), then heal
    PartitionLeader,
    /// Delay what a follower receives from its peers by 150 ms, then heal
    DelayFollower,
    /// Drop everything the followers receive, SIGKILL the leader, heal, start it again
    IsolateKillLeader,
}

impl Fault {
    pub fn kills(self) -> bool {
        matches!(self, Fault::KillLeader | Fault::KillFollower | Fault::KillMinority | Fault::IsolateKillLeader)
    }

    pub fn needs_proxies(self) -> bool {
        matches!(self, Fault::PartitionLeader | Fault::DelayFollower | Fault::IsolateKillLeader)
    }
}

/// The members under test, in `--endpoints` order.
pub struct Members {
    pub endpoints: Vec<String>,
    pids: Vec<Option<u32>>,
    restart_cmd: Option<String>,
    proxies: Vec<Proxy>,
}

/// The process listening on TCP `port` of this machine, from /proc (Linux).
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // local_address is ADDR:PORT in hex; state 0A is LISTEN; the inode is column 9.
            let local_port =
                cols.get(1).and_then(|a| a.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) && cols.get(3) == Some(&"0A") {
                inodes.extend(cols.get(9).map(|i| format!("socket:[{i}]")));
            }
        }
    }
    let procs = std::fs::read_dir("/proc").ok()?;
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            if inodes.iter().any(|i| target.as_os_str() == i.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

fn port_of(endpoint: &str) -> Option<u16> {
    endpoint.rsplit(':').next()?.trim_end_matches('/').parse().ok()
}

fn signal(pid: u32, sig: &str) -> Result<(), String> {
    let status = std::process::Command::new("kill").args([sig, &pid.to_string()]).status();
    match status {
        Ok(s) if s.success() => Ok(()),
        _ => Err(format!("kill {sig} {pid} failed")),
    }
}

impl Members {
    /// `peer_proxies`: `LISTEN:TARGET` ports in endpoint order, or none.
    pub fn new(
        endpoints: Vec<String>,
        pids: &[u32],
        restart_cmd: Option<String>,
        peer_proxies: &[String],
    ) -> Result<Members, String> {
        if !pids.is_empty() && pids.len() != endpoints.len() {
            return Err(format!("--pids names {} processes for {} endpoints", pids.len(), endpoints.len()));
        }
        if !peer_proxies.is_empty() && peer_proxies.len() != endpoints.len() {
            return Err(format!(
                "--peer-proxies names {} proxies for {} endpoints",
                peer_proxies.len(),
                endpoints.len()
            ));
        }
        let mut proxies = Vec::new();
        for p in peer_proxies {
            let parse =
                |s: &str| s.parse::<u16>().map_err(|_| format!("--peer-proxies {p}: expected LISTEN:TARGET ports"));
            let (listen, target) =
                p.split_once(':').ok_or_else(|| format!("--peer-proxies {p}: expected LISTEN:TARGET"))?;
            proxies
                .push(Proxy::try_start(parse(listen)?, parse(target)?).map_err(|e| format!("proxy on {listen}: {e}"))?);
        }
        let pids = if pids.is_empty() { vec![None; endpoints.len()] } else { pids.iter().map(|p| Some(*p)).collect() };
        Ok(Members { endpoints, pids, restart_cmd, proxies })
    }

    /// Member `i`'s process: as given, else whoever listens on its client port now.
    fn pid(&mut self, i: usize) -> Result<u32, String> {
        let found = port_of(&self.endpoints[i]).and_then(pid_listening_on);
        let pid = self.pids[i].filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists()).or(found);
        self.pids[i] = pid;
        pid.ok_or_else(|| format!("no process of this machine listens on {} (give --pids)", self.endpoints[i]))
    }

    /// The index of the leader, from the first member that answers Status.
    pub async fn leader(&self) -> Option<usize> {
        let mut ids = vec![0u64; self.endpoints.len()];
        let mut leader = None;
        for (i, ep) in self.endpoints.iter().enumerate() {
            let Ok(ch) = rustcd_cluster::probe::connect(ep).await else { continue };
            let mut m = MaintenanceClient::new(ch);
            let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(1), m.status(StatusRequest {})).await else {
                continue;
            };
            let s = s.into_inner();
            ids[i] = s.header.map_or(0, |h| h.member_id);
            if s.leader != 0 {
                leader = Some(s.leader);
            }
        }
        let leader = leader?;
        ids.iter().position(|id| *id == leader)
    }

    fn restart(&mut self, i: usize) -> Result<(), String> {
        let cmd = self.restart_cmd.as_deref().ok_or("kill faults need --restart-cmd")?.replace("{i}", &i.to_string());
        let status = std::process::Command::new("sh").args(["-c", &cmd]).status().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("--restart-cmd for member {i} failed: {status}"));
        }
        self.pids[i] = None;
        Ok(())
    }

    fn proxy(&self, i: usize) -> Result<&Proxy, String> {
        self.proxies.get(i).ok_or_else(|| "partition and delay faults need --peer-proxies".to_string())
    }

    /// The leader's index, waiting up to 15 s (after a fault the cluster may still be electing).
    async fn wait_for_leader(&self) -> Result<usize, String> {
        let asked = std::time::Instant::now();
        loop {
            if let Some(l) = self.leader().await {
                return Ok(l);
            }
            if asked.elapsed() > Duration::from_secs(15) {
                return Err("no leader to aim the fault at (for 15 s)".into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends `sig` to each of `victims`' processes.
    fn signal_all(&mut self, victims: &[usize], sig: &str) -> Result<(), String> {
        for &v in victims {
            let pid = self.pid(v)?;
            signal(pid, sig)?;
        }
        Ok(())
    }

    /// Sets the peer proxy of each of `victims` to `fault`.
    fn proxies(&self, victims: &[usize], fault: proxy::Fault) -> Result<(), String> {
        for &v in victims {
            self.proxy(v)?.set(fault);
        }
        Ok(())
    }

    /// Injects `f` for `hold`, heals, and says what was done.
    pub async fn inject(&mut self, f: Fault, hold: Duration) -> Result<String, String> {
        let n = self.endpoints.len();
        let leader = self.wait_for_leader().await?;
        let followers: Vec<usize> = (1..n).map(|d| (leader + d) % n).collect();
        let one = *followers.first().ok_or("a fault on a follower needs two members or more")?;
        // The members a signal hits (the proxy faults name theirs below).
        let victims = match f {
            Fault::KillLeader | Fault::StopLeader => vec![leader],
            Fault::KillFollower | Fault::StopFollower => vec![one],
            Fault::KillMinority | Fault::StopMinority => followers[..(n - 1) / 2].to_vec(),
            _ => Vec::new(),
        };
        let pause = || tokio::time::sleep(hold);
        let what = match f {
            Fault::KillLeader | Fault::KillFollower | Fault::KillMinority => {
                self.signal_all(&victims, "-KILL")?;
                pause().await;
                for &v in &victims {
                    self.restart(v)?;
                }
                format!("SIGKILL member {victims:?} for {hold:?}, restarted")
            }
            Fault::StopLeader | Fault::StopFollower | Fault::StopMinority => {
                self.signal_all(&victims, "-STOP")?;
                pause().await;
                self.signal_all(&victims, "-CONT")?;
                format!("SIGSTOP member {victims:?} for {hold:?}")
            }
            Fault::PartitionLeader => {
                self.proxies(&[leader], proxy::Fault::Blackhole)?;
                pause().await;
                self.proxies(&[leader], proxy::Fault::Healthy)?;
                format!("member {leader} (leader) heard nothing from its peers for {hold:?}")
            }
            Fault::DelayFollower => {
                self.proxies(&[one], proxy::Fault::Delay(Duration::from_millis(150)))?;
                pause().await;
                self.proxies(&[one], proxy::Fault::Healthy)?;
                format!("member {one}'s peer traffic delayed 150 ms for {hold:?}")
            }
            Fault::IsolateKillLeader => {
                self.proxies(&followers, proxy::Fault::Blackhole)?;
                pause().await;
                self.signal_all(&[leader], "-KILL")?;
                self.proxies(&followers, proxy::Fault::Healthy)?;
                pause().await;
                self.restart(leader)?;
                format!(
                    "members {followers:?} heard nothing for {hold:?}, then member {leader} (leader) SIGKILLed, restarted"
                )
            }
        };
        Ok(what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_port_leads_to_its_process() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        assert_eq!(pid_listening_on(port), Some(std::process::id()));
        drop(l);
        assert_eq!(pid_listening_on(port), None, "nothing listens there any more");
    }

    #[test]
    fn an_endpoints_port_is_its_last_part() {
        assert_eq!(port_of("127.0.0.1:2379"), Some(2379));
        assert_eq!(port_of("http://10.0.0.1:22379/"), Some(22379));
        assert_eq!(port_of("localhost"), None);
    }
}
