//! Go's `time.ParseDuration` and `time.Duration.String`, as etcd's duration flags, config keys
//! and printed times use them.

use std::time::Duration;

/// A duration Go would not parse, with Go's text (`time: invalid duration "x"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("time: invalid duration \"{0}\"")]
    Invalid(String),
    #[error("time: missing unit in duration \"{0}\"")]
    MissingUnit(String),
    #[error("time: unknown unit \"{unit}\" in duration \"{text}\"")]
    UnknownUnit { unit: String, text: String },
    /// Valid for Go, but below zero where only a length of time makes sense.
    #[error("time: negative duration \"{0}\"")]
    Negative(String),
}

const NS_PER_UNIT: [(&str, u64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

const LIMIT: u64 = 1 << 63;

/// Go's `time.ParseDuration`, in nanoseconds: `[-+]?([0-9]*(\.[0-9]*)?unit)+`, or `0`.
pub fn parse_duration(text: &str) -> Result<i64, DurationError> {
    let invalid = || DurationError::Invalid(text.to_string());
    let (neg, mut s) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
        let int_len = digits(s);
        let mut value: u64 = 0;
        for b in s[..int_len].bytes() {
            value = value.checked_mul(10).and_then(|v| v.checked_add(u64::from(b - b'0'))).ok_or_else(invalid)?;
            if value > LIMIT {
                return Err(invalid());
            }
        }
        s = &s[int_len..];
        // The fraction: its digits while they fit, the rest read and dropped (as Go does).
        let (mut frac, mut scale, mut frac_len) = (0u64, 1f64, 0usize);
        if let Some(rest) = s.strip_prefix('.') {
            frac_len = digits(rest);
            let mut overflowed = false;
            for b in rest[..frac_len].bytes() {
                match frac.checked_mul(10).and_then(|v| v.checked_add(u64::from(b - b'0'))) {
                    Some(v) if !overflowed && v <= LIMIT => {
                        frac = v;
                        scale *= 10.0;
                    }
                    _ => overflowed = true,
                }
            }
            s = &rest[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return Err(invalid());
        }
        let unit_len = s.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(s.len());
        if unit_len == 0 {
            return Err(DurationError::MissingUnit(text.to_string()));
        }
        let unit = &s[..unit_len];
        s = &s[unit_len..];
        let Some(&(_, ns)) = NS_PER_UNIT.iter().find(|(u, _)| *u == unit) else {
            return Err(DurationError::UnknownUnit { unit: unit.to_string(), text: text.to_string() });
        };
        if value > LIMIT / ns {
            return Err(invalid());
        }
        value *= ns;
        if frac > 0 {
            // A float is exact to the nanosecond for fractions of an hour, as in Go.
            value += (frac as f64 * (ns as f64 / scale)) as u64;
            if value > LIMIT {
                return Err(invalid());
            }
        }
        total = total.checked_add(value).filter(|t| *t <= LIMIT).ok_or_else(invalid)?;
    }
    if neg {
        return Ok((total as i64).wrapping_neg());
    }
    i64::try_from(total).map_err(|_| invalid())
}

/// [`parse_duration`] for a length of time: a negative one is refused.
pub fn parse_std_duration(text: &str) -> Result<Duration, DurationError> {
    let ns = parse_duration(text)?;
    u64::try_from(ns).map(Duration::from_nanos).map_err(|_| DurationError::Negative(text.to_string()))
}

/// Go's `time.Duration.String()`: `0s`, `1.5ms`, `2m30s`, `1h0m0s`.
pub fn format_duration(d: Duration) -> String {
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
        trim(ns / 1_000, ns % 1_000, 3, "\u{b5}s")
    } else if ns < 1_000_000_000 {
        trim(ns / 1_000_000, ns % 1_000_000, 6, "ms")
    } else {
        let secs = ns / 1_000_000_000;
        let (h, m) = (secs / 3600, (secs / 60) % 60);
        let s = trim(secs % 60, ns % 1_000_000_000, 9, "s");
        match (h, m) {
            (0, 0) => s,
            (0, m) => format!("{m}m{s}"),
            (h, m) => format!("{h}h{m}m{s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cases of Go's `time` package tests (`parseDurationTests`).
    #[test]
    fn gos_parse_duration_cases() {
        const S: i64 = 1_000_000_000;
        let ok: &[(&str, i64)] = &[
            ("0", 0),
            ("5s", 5 * S),
            ("30s", 30 * S),
            ("1478s", 1478 * S),
            ("-5s", -5 * S),
            ("+5s", 5 * S),
            ("-0", 0),
            ("+0", 0),
            ("5.0s", 5 * S),
            ("5.6s", 5 * S + 600_000_000),
            ("5.s", 5 * S),
            (".5s", 500_000_000),
            ("1.0s", S),
            ("1.00s", S),
            ("1.004s", S + 4_000_000),
            ("1.0040s", S + 4_000_000),
            ("100.00100s", 100 * S + 1_000_000),
            ("10ns", 10),
            ("11us", 11_000),
            ("12µs", 12_000),
            ("12μs", 12_000),
            ("13ms", 13_000_000),
            ("14s", 14 * S),
            ("15m", 15 * 60 * S),
            ("16h", 16 * 3600 * S),
            ("3h30m", (3 * 3600 + 30 * 60) * S),
            ("10.5s4m", 4 * 60 * S + 10 * S + 500_000_000),
            ("-2m3.4s", -(2 * 60 * S + 3 * S + 400_000_000)),
            ("1h2m3s4ms5us6ns", 3600 * S + 2 * 60 * S + 3 * S + 4_000_000 + 5_000 + 6),
            ("39h9m14.425s", 39 * 3600 * S + 9 * 60 * S + 14 * S + 425_000_000),
            ("52763797000ns", 52_763_797_000),
            ("0.3333333333333333333h", 20 * 60 * S),
            ("9007199254740993ns", (1 << 53) + 1),
            ("9223372036854775807ns", i64::MAX),
            ("9223372036854775.807us", i64::MAX),
            ("9223372036s854ms775us807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("-9223372036854775.808us", i64::MIN),
            ("-2562047h47m16.854775808s", i64::MIN),
            ("0.100000000000000000000h", 6 * 60 * S),
            ("0.830103483285477580700h", 49 * 60 * S + 48 * S + 372_539_827),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(*want), "{text}");
        }
        let bad = [
            "",
            "3",
            "-",
            "s",
            ".",
            "-.",
            ".s",
            "+.s",
            "1d",
            "\u{85}\u{85}",
            "\u{ffd}",
            "9223372036854775808ns",
            "9223372036854775.808us",
            "9223372036854ms775us808ns",
            "-9223372036854775809ns",
        ];
        for text in bad {
            assert!(parse_duration(text).is_err(), "{text:?} should not parse");
        }
    }

    #[test]
    fn errors_say_what_go_says() {
        assert_eq!(parse_duration("ten").unwrap_err().to_string(), r#"time: invalid duration "ten""#);
        assert_eq!(parse_duration("3").unwrap_err().to_string(), r#"time: missing unit in duration "3""#);
        assert_eq!(parse_duration("1d").unwrap_err().to_string(), r#"time: unknown unit "d" in duration "1d""#);
        assert!(matches!(parse_std_duration("-1s"), Err(DurationError::Negative(_))));
        assert_eq!(parse_std_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_std_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn prints_as_go_does() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_nanos(1)), "1ns");
        assert_eq!(format_duration(Duration::from_nanos(1_100)), "1.1µs");
        assert_eq!(format_duration(Duration::from_micros(2_200)), "2.2ms");
        assert_eq!(format_duration(Duration::from_millis(3_300)), "3.3s");
        assert_eq!(format_duration(Duration::from_secs(4 * 60 + 5)), "4m5s");
        assert_eq!(format_duration(Duration::from_millis(4 * 60_000 + 5_001)), "4m5.001s");
        assert_eq!(
            format_duration(Duration::from_secs(5 * 3600 + 6 * 60 + 7) + Duration::from_millis(1)),
            "5h6m7.001s"
        );
        assert_eq!(format_duration(Duration::from_secs(8 * 3600) + Duration::from_nanos(1)), "8h0m0.000000001s");
        for d in ["1h0m0s", "2m30s", "1.5ms", "250ms"] {
            let parsed = parse_std_duration(d).expect(d);
            assert_eq!(format_duration(parsed), d, "round trip");
        }
    }
}
