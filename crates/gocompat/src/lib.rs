//! rustcd-gocompat: the text forms etcd inherits from Go and its flag library, written once for
//! every rustcd binary (etcd, etcdctl, etcdutl, grpc-proxy, the bench): `time.ParseDuration`
//! and `Duration.String` ([`duration`]), `strconv.ParseBool` and pflag's bool flag forms
//! ([`boolean`]), `encoding/json`'s string form ([`json`]), go-humanize's byte sizes
//! ([`human_bytes`]) and clientv3's `GetPrefixRangeEnd` ([`prefix_end`]).
//!
//! It owns parsing and printing only: it must not know any flag's name, a server or a client,
//! and depends on nothing of rustcd's. Error texts are Go's, since users see them.

pub mod boolean;
pub mod duration;
pub mod json;

pub use boolean::{BoolError, flag_bool, parse_bool};
pub use duration::{DurationError, format_duration, parse_duration, parse_std_duration};
pub use json::{json_string, json_strings};

/// `t` in RFC 3339 with microseconds, UTC (`2024-03-21T12:02:20.355409Z`): etcd's log
/// timestamps, and a Go `time.Time` as JSON reads it.
pub fn rfc3339_micros(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// go-humanize's `Bytes`, as etcd's logs and tools print sizes: SI units, one decimal below 10
/// (`2147483648` is `2.1 GB`).
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

/// The end of the range of keys that start with `prefix` (clientv3's `GetPrefixRangeEnd`): the
/// prefix with its last byte below 0xff incremented and what follows it dropped; `[0]` (every
/// key from the start on) when every byte is 0xff or the prefix is empty.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::{human_bytes, prefix_end};

    #[test]
    fn sizes_as_go_humanize_prints_them() {
        assert_eq!(human_bytes(2147483648), "2.1 GB");
        assert_eq!(human_bytes(20480), "20 kB");
        assert_eq!(human_bytes(5), "5 B");
    }

    #[test]
    fn prefix_ends_as_clientv3s() {
        assert_eq!(prefix_end(b"abc"), b"abd");
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b");
        assert_eq!(prefix_end(&[0xff, 0xff]), [0]);
        assert_eq!(prefix_end(b""), [0]);
        assert_eq!(prefix_end(&[1, 0xfe]), [1, 0xff]);
    }
}
