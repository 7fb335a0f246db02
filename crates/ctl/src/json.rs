//! Text encodings etcdctl inherits from Go: `encoding/json` of protobuf structs (field order,
//! `omitempty`, bytes as base64), `%q` quoting, humanized byte sizes and `time.Duration` strings.

use std::fmt::Write;

/// A JSON object written field by field, the way Go's `encoding/json` writes a struct.
#[derive(Default)]
pub struct Obj {
    out: String,
}

impl Obj {
    pub fn new() -> Obj {
        Obj::default()
    }

    fn key(&mut self, name: &str) {
        self.out.push(if self.out.is_empty() { '{' } else { ',' });
        let _ = write!(self.out, "\"{name}\":");
    }

    /// A field written whether or not it is zero.
    pub fn raw(mut self, name: &str, json: &str) -> Obj {
        self.key(name);
        self.out.push_str(json);
        self
    }

    /// An integer field with `omitempty`.
    pub fn int(self, name: &str, v: impl Into<i128>) -> Obj {
        let v = v.into();
        if v == 0 { self } else { self.raw(name, &v.to_string()) }
    }

    pub fn bool(self, name: &str, v: bool) -> Obj {
        if v { self.raw(name, "true") } else { self }
    }

    pub fn str(self, name: &str, v: &str) -> Obj {
        if v.is_empty() { self } else { self.raw(name, &string(v)) }
    }

    pub fn bytes(self, name: &str, v: &[u8]) -> Obj {
        if v.is_empty() { self } else { self.raw(name, &format!("\"{}\"", base64(v))) }
    }

    /// A message field (`omitempty` on a pointer: only absent ones are left out).
    pub fn obj(self, name: &str, v: Option<String>) -> Obj {
        match v {
            Some(json) => self.raw(name, &json),
            None => self,
        }
    }

    /// A repeated field, left out when empty.
    pub fn list(self, name: &str, items: Vec<String>) -> Obj {
        if items.is_empty() { self } else { self.raw(name, &format!("[{}]", items.join(","))) }
    }

    pub fn end(mut self) -> String {
        if self.out.is_empty() {
            return "{}".to_string();
        }
        self.out.push('}');
        self.out
    }
}

/// A JSON string as Go writes it (HTML-sensitive characters escaped too).
pub fn string(s: &str) -> String {
    rustcd_gocompat::json_string(s)
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Go's `%q` of a byte string.
pub fn quote(data: &[u8]) -> String {
    let mut out = String::from("\"");
    for chunk in data.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '\x0b' => out.push_str("\\v"),
                c if (c as u32) < 0x20 || c == '\x7f' => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    out
}

pub use rustcd_gocompat::{format_duration as go_duration, human_bytes};

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn encodings_match_go() {
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"bar2"), "YmFyMg==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(human_bytes(20480), "20 kB");
        assert_eq!(human_bytes(25000), "25 kB");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(human_bytes(5), "5 B");
        assert_eq!(go_duration(Duration::from_nanos(6_458_500)), "6.4585ms");
        assert_eq!(go_duration(Duration::from_nanos(772_423)), "772.423µs");
        assert_eq!(go_duration(Duration::from_millis(61_500)), "1m1.5s");
        assert_eq!(quote(b"a\"b\n\xff"), "\"a\\\"b\\n\\xff\"");
        assert_eq!(string("<a>"), "\"\\u003ca\\u003e\"");
        assert_eq!(Obj::new().int("a", 0).int("b", 2u64).str("c", "x").end(), "{\"b\":2,\"c\":\"x\"}");
    }
}
