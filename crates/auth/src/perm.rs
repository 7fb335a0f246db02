//! Whether a user's permissions cover a key or a range (etcd's `rangePermCache`): each
//! permission is an interval of keys, `[key, range_end)`, to the end of the keyspace when
//! `range_end` is `\0`, or the one key `key` when `range_end` is empty. A request is permitted
//! when the union of the intervals of the wanted kind covers what it touches.

use rustcd_api::authpb::Permission;
use rustcd_api::authpb::permission::Type;

/// `[begin, end)`; `end` `None`: to the end of the keyspace.
type Interval = (Vec<u8>, Option<Vec<u8>>);

fn interval(key: &[u8], range_end: &[u8]) -> Interval {
    match range_end {
        // one key: [key, key\0)
        [] => (key.to_vec(), Some([key, &[0u8][..]].concat())),
        [0] => (key.to_vec(), None),
        end => (key.to_vec(), Some(end.to_vec())),
    }
}

/// Whether `perms` grant `want` (READ or WRITE; READWRITE grants both) over `[key, range_end)`.
pub fn covers<'a>(perms: impl Iterator<Item = &'a Permission>, want: Type, key: &[u8], range_end: &[u8]) -> bool {
    let mut ivs: Vec<Interval> = perms
        .filter(|p| p.perm_type == want as i32 || p.perm_type == Type::Readwrite as i32)
        .map(|p| interval(&p.key, &p.range_end))
        .collect();
    let (begin, end) = interval(key, range_end);
    // An empty range asks for nothing a permission could refuse only if it is truly empty.
    if end.as_ref().is_some_and(|e| e <= &begin) {
        return ivs.iter().any(|(b, e)| b <= &begin && e.as_ref().is_none_or(|e| e > &begin));
    }
    ivs.sort();
    let mut reached = begin;
    for (b, e) in ivs {
        if b > reached {
            break;
        }
        match e {
            None => return true,
            Some(e) if e > reached => reached = e,
            Some(_) => {}
        }
        if end.as_ref().is_some_and(|end| &reached >= end) {
            return true;
        }
    }
    false
}

/// etcd's `isValidPermissionRange`: a range must end after it begins (or run to the end).
pub fn valid_range(key: &[u8], range_end: &[u8]) -> bool {
    !(!range_end.is_empty() && range_end != [0] && key >= range_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: Type, key: &str, end: &[u8]) -> Permission {
        Permission { perm_type: t as i32, key: key.as_bytes().to_vec().into(), range_end: end.to_vec().into() }
    }

    #[test]
    fn single_keys_ranges_and_open_ends() {
        let perms = [p(Type::Read, "a", b""), p(Type::Readwrite, "b", b"d"), p(Type::Write, "x", b"\0")];
        let read = |k: &str, e: &[u8]| covers(perms.iter(), Type::Read, k.as_bytes(), e);
        let write = |k: &str, e: &[u8]| covers(perms.iter(), Type::Write, k.as_bytes(), e);
        assert!(read("a", b"") && !read("aa", b"") && !write("a", b""));
        assert!(read("b", b"") && read("c", b"") && read("b", b"d") && read("bb", b"c") && !read("b", b"e"));
        assert!(write("b", b"d") && !write("a", b"c"));
        assert!(write("x", b"") && write("zzz", b"") && write("x", b"\0") && !write("w", b"\0") && !read("x", b""));
        // A key and the ranges next to it join up: [a, a\0) + [b, d) does not cover [a, d).
        assert!(!read("a", b"d"));
        let joined = [p(Type::Read, "a", b"b"), p(Type::Read, "b", b"c")];
        assert!(covers(joined.iter(), Type::Read, b"a", b"c"));
        assert!(!covers(joined.iter(), Type::Read, b"a", b"\0"));
    }

    #[test]
    fn ranges_must_end_after_they_begin() {
        assert!(valid_range(b"a", b"") && valid_range(b"a", b"\0") && valid_range(b"a", b"b"));
        assert!(!valid_range(b"b", b"a") && !valid_range(b"a", b"a"));
    }
}
