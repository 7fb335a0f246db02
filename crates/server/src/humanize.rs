//! go-humanize's `Bytes` and Go's durations: how etcd's logs and its tools print sizes and times.

use std::time::Duration;

/// SI units, one decimal below 10 (`2147483648` is `2.1 GB`).
pub fn human_bytes(n: u64) -> String {
    if n < 10 {
        return format!("{n} B");
    }
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let e = ((n as f64).ln() / 1000f64.ln()).floor() as usize;
    let e = e.min(UNITS.len() - 1);
    let val = ((n as f64) / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 { format!("{val:.1} {}", UNITS[e]) } else { format!("{val:.0} {}", UNITS[e]) }
}

/// Go's `time.Duration.String()`.
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    let trim = |whole: u128, frac: u128, digits: usize, unit: &str| {
        let mut f = format!("{frac:0digits$}");
        while f.ends_with('0') {
            f.pop();
        }
        if f.is_empty() { format!("{whole}{unit}") } else { format!("{whole}.{f}{unit}") }
    };
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        trim(ns / 1_000, ns % 1_000, 3, "µs")
    } else if ns < 1_000_000_000 {
        trim(ns / 1_000_000, ns % 1_000_000, 6, "ms")
    } else {
        let secs = ns / 1_000_000_000;
        let frac = ns % 1_000_000_000;
        let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
        let s = trim(s, frac, 9, "s");
        match (h, m) {
            (0, 0) => s,
            (0, m) => format!("{m}m{s}"),
            (h, m) => format!("{h}h{m}m{s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn as_go_humanize_prints_them() {
        assert_eq!(super::human_bytes(2147483648), "2.1 GB");
        assert_eq!(super::human_bytes(20480), "20 kB");
        assert_eq!(super::human_bytes(5), "5 B");
        assert_eq!(super::go_duration(super::Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(super::go_duration(super::Duration::from_micros(1500)), "1.5ms");
    }
}
