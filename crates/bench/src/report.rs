//! etcd benchmark's report (`pkg/report`): the summary, the response time histogram and the
//! latency distribution as etcd prints them, the same figures as JSON (`-w json`), and the
//! progress bar shown while a run goes (on a terminal only).

use std::collections::BTreeMap;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// etcd's latency percentiles.
const PCTLS: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];

/// One run's results: every successful request's latency, the errors by message, and the
/// servers' cost sampled around it.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Latencies of the successful requests, seconds, ascending.
    pub lats: Vec<f64>,
    /// Failed requests by error text (`rpc error: code = ... desc = ...`, as Go prints them).
    pub errors: BTreeMap<String, usize>,
    /// Wall time of the run.
    pub total: Duration,
    /// Server CPU time (user + system, summed over members) per request, microseconds.
    pub cpu_us_per_req: f64,
    /// Largest member RSS after the run, MiB.
    pub rss_mib: f64,
}

impl Report {
    pub fn new(mut lats: Vec<f64>, errors: BTreeMap<String, usize>, total: Duration) -> Report {
        lats.sort_by(|a, b| a.total_cmp(b));
        Report { lats, errors, total, ..Default::default() }
    }

    /// Successful requests per second (etcd counts only those).
    pub fn requests_per_sec(&self) -> f64 {
        self.lats.len() as f64 / self.total.as_secs_f64().max(1e-9)
    }

    pub fn error_count(&self) -> usize {
        self.errors.values().sum()
    }

    /// The latency at quantile `q` (0..1), milliseconds.
    pub fn pct_ms(&self, q: f64) -> f64 {
        let n = self.lats.len();
        if n == 0 {
            return 0.0;
        }
        self.lats[((n as f64 * q) as usize).min(n - 1)] * 1000.0
    }

    pub fn p50_ms(&self) -> f64 {
        self.pct_ms(0.5)
    }

    pub fn p99_ms(&self) -> f64 {
        self.pct_ms(0.99)
    }

    fn average(&self) -> f64 {
        self.lats.iter().sum::<f64>() / self.lats.len().max(1) as f64
    }

    fn stddev(&self) -> f64 {
        let avg = self.average();
        (self.lats.iter().map(|l| (l - avg) * (l - avg)).sum::<f64>() / self.lats.len().max(1) as f64).sqrt()
    }

    fn fastest(&self) -> f64 {
        self.lats.first().copied().unwrap_or(0.0)
    }

    fn slowest(&self) -> f64 {
        self.lats.last().copied().unwrap_or(0.0)
    }

    /// etcd's percentiles: the first latency at or past each percentile's position.
    fn percentiles(&self) -> [f64; 8] {
        let mut data = [0.0; 8];
        let n = self.lats.len();
        let mut j = 0;
        for (i, l) in self.lats.iter().enumerate() {
            if j == PCTLS.len() {
                break;
            }
            if i as f64 * 100.0 / n as f64 >= PCTLS[j] {
                data[j] = *l;
                j += 1;
            }
        }
        data
    }

    /// etcd's eleven histogram buckets (upper bounds, seconds) and their counts.
    fn histogram(&self) -> Vec<(f64, usize)> {
        let (fastest, slowest) = (self.fastest(), self.slowest());
        let step = (slowest - fastest) / 10.0;
        let mut buckets: Vec<(f64, usize)> = (0..10).map(|i| (fastest + step * i as f64, 0)).collect();
        buckets.push((slowest, 0));
        let mut bi = 0;
        for l in &self.lats {
            while *l > buckets[bi].0 && bi < buckets.len() - 1 {
                bi += 1;
            }
            buckets[bi].1 += 1;
        }
        buckets
    }

    /// The report as etcd's benchmark prints it (`precise` is its `--precise`).
    pub fn etcd_text(&self, precise: bool) -> String {
        let f = |v: f64| if precise { go_g(v) } else { format!("{v:4.4}") };
        let mut s = String::new();
        if !self.lats.is_empty() {
            s += "\nSummary:\n";
            s += &format!("  Total:\t{} secs.\n", f(self.total.as_secs_f64()));
            s += &format!("  Slowest:\t{} secs.\n", f(self.slowest()));
            s += &format!("  Fastest:\t{} secs.\n", f(self.fastest()));
            s += &format!("  Average:\t{} secs.\n", f(self.average()));
            s += &format!("  Stddev:\t{} secs.\n", f(self.stddev()));
            s += &format!("  Requests/sec:\t{}\n", f(self.requests_per_sec()));
            s += "\nResponse time histogram:\n";
            let hist = self.histogram();
            let max = hist.iter().map(|b| b.1).max().unwrap_or(0).max(1);
            for (bound, count) in &hist {
                s += &format!("  {} [{count}]\t|{}\n", f(*bound), "∎".repeat(count * 40 / max));
            }
            s += "\nLatency distribution:\n";
            for (p, v) in PCTLS.iter().zip(self.percentiles()) {
                if v > 0.0 {
                    s += &format!("  {p}% in {} secs.\n", f(v));
                }
            }
        }
        if !self.errors.is_empty() {
            s += "\nError distribution:\n";
            for (e, n) in &self.errors {
                s += &format!("  [{n}]\t{e}\n");
            }
        }
        s
    }

    /// The same figures as JSON (`-w json`), seconds as numbers.
    pub fn json(&self) -> serde_json::Value {
        let pct: serde_json::Map<String, serde_json::Value> =
            PCTLS.iter().zip(self.percentiles()).map(|(p, v)| (p.to_string(), v.into())).collect();
        let hist: Vec<serde_json::Value> =
            self.histogram().iter().map(|(b, c)| serde_json::json!({"le": b, "count": c})).collect();
        serde_json::json!({
            "total": self.total.as_secs_f64(),
            "requests": self.lats.len(),
            "slowest": self.slowest(),
            "fastest": self.fastest(),
            "average": self.average(),
            "stddev": self.stddev(),
            "requests_per_sec": self.requests_per_sec(),
            "histogram": if self.lats.is_empty() { Vec::new() } else { hist },
            "latency_distribution": pct,
            "errors": self.errors,
            "server_cpu_us_per_request": self.cpu_us_per_req,
            "server_max_rss_mib": self.rss_mib,
        })
    }
}

/// Go's `%g`: the shortest representation, with an exponent (two digits at least) below 1e-4
/// or from 1e21 on.
fn go_g(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-4 || v.abs() >= 1e21) {
        let s = format!("{v:e}");
        match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = e.strip_prefix('-').map_or(("+", e), |d| ("-", d));
                format!("{m}e{sign}{digits:0>2}")
            }
            None => s,
        }
    } else {
        format!("{v}")
    }
}

/// The error text etcd's benchmark counts a failed request under.
pub fn error_text(s: &tonic::Status) -> String {
    format!("rpc error: code = {:?} desc = {}", s.code(), s.message())
}

/// A progress bar of `len` steps on standard error; draws nothing when that is not a terminal.
pub fn bar(len: usize) -> ProgressBar {
    let b = ProgressBar::new(len as u64);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} {percent}% {elapsed_precise}") {
        b.set_style(style);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(lats: &[f64]) -> Report {
        Report::new(lats.to_vec(), BTreeMap::new(), Duration::from_secs(2))
    }

    #[test]
    fn percentiles_are_etcds() {
        let r = report(&(1..=100).map(|i| i as f64 / 1000.0).collect::<Vec<_>>());
        // etcd takes the first latency whose position i*100/n reaches the percentile.
        assert_eq!(r.percentiles(), [0.011, 0.026, 0.051, 0.076, 0.091, 0.096, 0.1, 0.0]);
        assert!(r.etcd_text(false).contains("  50% in 0.0510 secs.\n"));
        assert!(!r.etcd_text(false).contains("99.9%"), "a zero percentile is not printed, as etcd");
    }

    #[test]
    fn histogram_counts_every_latency_once() {
        let r = report(&[0.001, 0.001, 0.002, 0.005, 0.011]);
        let h = r.histogram();
        assert_eq!(h.len(), 11);
        assert_eq!(h.iter().map(|b| b.1).sum::<usize>(), 5);
        assert_eq!(h[0], (0.001, 2));
        assert_eq!(h[10], (0.011, 1));
        assert_eq!(r.requests_per_sec(), 2.5);
        let text = r.etcd_text(false);
        assert!(text.contains("  Requests/sec:\t2.5000\n"), "{text}");
        assert!(text.contains("  0.0010 [2]\t|∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎\n"), "{text}");
    }

    #[test]
    fn errors_are_listed_and_json_carries_the_figures() {
        let mut errors = BTreeMap::new();
        errors.insert("rpc error: code = Unavailable desc = x".to_string(), 3);
        let r = Report::new(vec![0.5], errors, Duration::from_secs(1));
        assert!(r.etcd_text(false).ends_with("\nError distribution:\n  [3]\trpc error: code = Unavailable desc = x\n"));
        let j = r.json();
        assert_eq!(j["requests"], 1);
        assert_eq!((j["slowest"].as_f64(), j["latency_distribution"]["99.9"].as_f64()), (Some(0.5), Some(0.0)));
        assert_eq!(j["errors"]["rpc error: code = Unavailable desc = x"], 3);
    }

    #[test]
    fn precise_is_gos_g() {
        assert_eq!(go_g(0.25), "0.25");
        assert_eq!(go_g(0.00001234), "1.234e-05");
        assert_eq!(go_g(12.0), "12");
    }
}
