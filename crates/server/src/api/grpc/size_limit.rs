//! grpc-go (and so etcd) refuses an oversized request with `ResourceExhausted` and the text
//! `grpc: received message larger than max (N vs. M)`; tonic says `OutOfRange` in other words.
//! This response mapper rewrites tonic's answer into grpc-go's, so clients see etcd's error.

use axum::http::{HeaderValue, Response};

const TONIC_PREFIX: &str = "Error, decoded message length too large: found ";

/// Rewrites a trailers-only `OutOfRange` size refusal into grpc-go's `ResourceExhausted`.
pub fn rewrite<B>(mut resp: Response<B>) -> Response<B> {
    let h = resp.headers();
    if h.get("grpc-status").and_then(|v| v.to_str().ok()) != Some("11") {
        return resp;
    }
    let Some(msg) = h.get("grpc-message").and_then(|v| v.to_str().ok()).map(percent_decode) else {
        return resp;
    };
    let Some(rest) = msg.strip_prefix(TONIC_PREFIX) else {
        return resp;
    };
    let mut numbers = rest.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty());
    let (Some(found), Some(limit)) = (numbers.next(), numbers.next()) else {
        return resp;
    };
    let text = format!("grpc: received message larger than max ({found} vs. {limit})");
    let headers = resp.headers_mut();
    headers.insert("grpc-status", HeaderValue::from_static("8"));
    if let Ok(v) = HeaderValue::from_str(&percent_encode(&text)) {
        headers.insert("grpc-message", v);
    }
    resp
}

/// gRPC's percent-decoding of `grpc-message`.
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|c| if (0x20..0x7f).contains(&c) && c != b'%' { (c as char).to_string() } else { format!("%{c:02X}") })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_round_trip() {
        assert_eq!(percent_decode("a%20b%3A"), "a b:");
        assert_eq!(percent_decode("etcdserver:%20key%20is%20not%20provided%"), "etcdserver: key is not provided%");
        assert_eq!(percent_decode(&percent_encode("x%y")), "x%y");
    }
}
