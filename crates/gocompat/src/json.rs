//! Go's `encoding/json` string form, for the JSON etcd writes that other etcd members and tools
//! read byte for byte (member records, conf change contexts): `<`, `>` and `&` as `\u003c`,
//! `\u003e`, `\u0026` (Go's HTML-safe default), U+2028 and U+2029 escaped, control characters as
//! `\n`, `\r`, `\t` or `\u00XX`.

/// `s` as Go's `json.Marshal` writes a string, quotes included.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A list of strings as Go writes a `[]string` that is not nil.
pub fn json_strings(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| json_string(s)).collect();
    format!("[{}]", items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_go_does() {
        // Go: json.Marshal("a\"b\\c<d>&\n\x01\u2028é") (go1.19)
        assert_eq!(json_string("a\"b\\c<d>&\n\x01\u{2028}é"), r#""a\"b\\c\u003cd\u003e\u0026\n\u0001\u2028é""#);
        assert_eq!(json_strings(&["http://127.0.0.1:2380".into(), "x".into()]), r#"["http://127.0.0.1:2380","x"]"#);
        assert_eq!(json_strings(&[]), "[]");
    }
}
