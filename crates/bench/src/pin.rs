//! `compare --pin`: the servers' processes on one set of cores, the load generator on the
//! others, identical for both servers, so that throughput measures the server and not the
//! client sharing its CPUs. Affinity is set with util-linux's `taskset` for every thread of a
//! process (`-a`); threads a process starts later inherit it.

use std::process::Command;

/// Which cores the servers and the load generator run on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pinning {
    pub servers: Vec<usize>,
    pub client: Vec<usize>,
}

impl Pinning {
    /// Half the cores (rounded down, at least one) for the servers, the rest for the client;
    /// `None` on a single core.
    pub fn plan(cores: usize) -> Option<Pinning> {
        if cores < 2 {
            return None;
        }
        let servers = (cores / 2).max(1);
        Some(Pinning { servers: (0..servers).collect(), client: (servers..cores).collect() })
    }

    /// The machine's plan.
    pub fn for_this_machine() -> Option<Pinning> {
        Self::plan(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    pub fn describe(&self) -> String {
        format!("pinned: servers on cores {}, load generator on cores {}", list(&self.servers), list(&self.client))
    }

    /// Pins the load generator (this process, every thread).
    pub fn pin_client(&self) -> Result<(), String> {
        pin(std::process::id(), &self.client)
    }

    /// Pins a server process (every thread).
    pub fn pin_server(&self, pid: u32) -> Result<(), String> {
        pin(pid, &self.servers)
    }
}

fn list(cores: &[usize]) -> String {
    cores.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

fn pin(pid: u32, cores: &[usize]) -> Result<(), String> {
    let out = Command::new("taskset")
        .args(["-a", "-p", "-c", &list(cores), &pid.to_string()])
        .output()
        .map_err(|e| format!("taskset: {e}"))?;
    if !out.status.success() {
        return Err(format!("taskset {pid}: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    // Read back: a pinning that did not take would make the table lie.
    let now = cores_of(pid);
    let want = list(cores);
    let as_range = format!("{}-{}", cores.first().unwrap_or(&0), cores.last().unwrap_or(&0));
    if now == want || now == as_range { Ok(()) } else { Err(format!("process {pid} runs on cores {now}, not {want}")) }
}

/// The cores a process's main thread may run on, as `taskset -p` reports them.
fn cores_of(pid: u32) -> String {
    Command::new("taskset")
        .args(["-c", "-p", &pid.to_string()])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).rsplit(':').next().unwrap_or("").trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::Pinning;

    #[test]
    fn servers_get_half_the_cores_and_the_client_the_rest() {
        assert_eq!(Pinning::plan(1), None);
        assert_eq!(Pinning::plan(2), Some(Pinning { servers: vec![0], client: vec![1] }));
        assert_eq!(Pinning::plan(5), Some(Pinning { servers: vec![0, 1], client: vec![2, 3, 4] }));
    }

    #[test]
    fn a_pinned_child_runs_on_its_cores() {
        let Some(p) = Pinning::plan(2) else { return };
        let mut child = std::process::Command::new("sleep").arg("5").spawn().expect("sleep");
        p.pin_server(child.id()).expect("pin");
        assert_eq!(super::cores_of(child.id()), "0");
        let _ = child.kill();
        let _ = child.wait();
    }
}
