//! Key ranges as etcd reads them: one key, `[key, end)`, or everything from `key` on.

/// A range of keys, decoded from a request's `key` and `range_end`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRange {
    /// `range_end` empty: exactly `key`.
    Single(Vec<u8>),
    /// `[start, end)`.
    Span(Vec<u8>, Vec<u8>),
    /// `range_end` is `"\0"`: every key `>= start`.
    From(Vec<u8>),
}

impl KeyRange {
    /// etcd's reading of `key` and `range_end`.
    pub fn new(key: &[u8], range_end: &[u8]) -> Self {
        match range_end {
            [] => KeyRange::Single(key.to_vec()),
            [0] => KeyRange::From(key.to_vec()),
            end => KeyRange::Span(key.to_vec(), end.to_vec()),
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match self {
            KeyRange::Single(key) => k == key.as_slice(),
            KeyRange::Span(start, end) => k >= start.as_slice() && k < end.as_slice(),
            KeyRange::From(start) => k >= start.as_slice(),
        }
    }

    /// True when the two ranges share at least one key.
    pub fn overlaps(&self, other: &KeyRange) -> bool {
        let (a0, a1) = self.bounds();
        let (b0, b1) = other.bounds();
        let a_before_b = matches!(&a1, Some(e) if *e <= b0);
        let b_before_a = matches!(&b1, Some(e) if *e <= a0);
        !(a_before_b || b_before_a)
    }

    /// Start (inclusive) and end (exclusive, `None` for unbounded) of the range.
    pub fn bounds(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        match self {
            KeyRange::Single(k) => {
                let mut end = k.clone();
                end.push(0);
                (k.clone(), Some(end))
            }
            KeyRange::Span(s, e) => (s.clone(), Some(e.clone())),
            KeyRange::From(s) => (s.clone(), None),
        }
    }

    /// True for a span whose end is not after its start: it holds no key.
    pub fn is_empty(&self) -> bool {
        matches!(self, KeyRange::Span(s, e) if e <= s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_and_overlap() {
        assert_eq!(KeyRange::new(b"a", b""), KeyRange::Single(b"a".to_vec()));
        assert_eq!(KeyRange::new(b"a", b"\0"), KeyRange::From(b"a".to_vec()));
        let span = KeyRange::new(b"a", b"c");
        assert!(span.contains(b"b") && !span.contains(b"c"));
        assert!(span.overlaps(&KeyRange::new(b"b", b"")));
        assert!(!span.overlaps(&KeyRange::new(b"c", b"")));
        assert!(KeyRange::new(b"z", b"\0").overlaps(&KeyRange::new(b"zz", b"")));
        assert!(KeyRange::new(b"b", b"a").is_empty());
    }
}
