//! What the benchmark reads of server processes, from /proc: CPU time and RSS, and a sampler of
//! the largest RSS while something runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// user + system CPU seconds and RSS bytes of a process.
pub fn proc_usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = 100.0; // sysconf(_SC_CLK_TCK) on Linux
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ((field(11) + field(12)) / ticks, field(21) * 4096.0)
}

/// CPU seconds summed over `pids`, and the largest RSS among them in bytes.
pub fn usage(pids: &[u32]) -> (f64, f64) {
    let mut cpu = 0.0;
    let mut rss: f64 = 0.0;
    for pid in pids {
        let (c, r) = proc_usage(*pid);
        cpu += c;
        rss = rss.max(r);
    }
    (cpu, rss)
}

pub fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

/// Samples a process's RSS every 10 ms on a thread of its own until [`PeakRss::stop`].
pub struct PeakRss {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<f64>,
}

impl PeakRss {
    pub fn start(pid: u32) -> PeakRss {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak: f64 = 0.0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(proc_usage(pid).1);
                std::thread::sleep(Duration::from_millis(10));
            }
            peak.max(proc_usage(pid).1)
        });
        PeakRss { stop, thread }
    }

    /// The largest RSS seen, bytes.
    pub fn stop(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0.0)
    }
}
