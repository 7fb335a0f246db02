//! go-humanize's `Bytes`, which etcd's logs and its tools print sizes with.

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

#[cfg(test)]
mod tests {
    #[test]
    fn as_go_humanize_prints_them() {
        assert_eq!(super::human_bytes(2147483648), "2.1 GB");
        assert_eq!(super::human_bytes(20480), "20 kB");
        assert_eq!(super::human_bytes(5), "5 B");
    }
}
