//! etcdctl 3.4 dials some endpoints as `passthrough:///http://host:port`, so its HTTP/2
//! requests carry `:authority: http://host:port`. grpc-go (etcd) accepts that; the `h2` crate
//! under tonic refuses it as malformed and resets the stream. This connection wrapper
//! rewrites inbound HTTP/2 header blocks so `:authority` is a plain `host:port` before `h2`
//! sees them; everything else passes through unchanged.
//!
//! The first header block of a connection is HPACK-decoded (with `loona-hpack`, a maintained fork of the `hpack` crate: its
//! Huffman tables are the reason for the dependency). If its `:authority` is fine, the block
//! goes on untouched and the connection becomes a plain pass-through: grpc-go sends one
//! authority per connection. Otherwise every block of the connection is decoded and
//! re-encoded as literals without indexing, so the server's decoder table stays empty and the
//! client's encoder state is mirrored by our decoder.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// Largest frame payload we emit (HTTP/2's default SETTINGS_MAX_FRAME_SIZE).
const MAX_FRAME: usize = 16_384;
/// Largest header block we accept.
const MAX_BLOCK: usize = 1024 * 1024;

enum Mode {
    /// Still reading the first bytes to tell HTTP/2 from HTTP/1.
    Detect,
    Http2,
    Passthrough,
}

/// A header block being collected across HEADERS and CONTINUATION frames.
struct Pending {
    /// The frames as received, to pass on untouched when no rewrite is needed.
    raw: Vec<u8>,
    stream: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
}

/// Wraps an accepted connection; see the module doc.
pub struct AuthorityFix<S> {
    inner: S,
    mode: Mode,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    out_pos: usize,
    decoder: loona_hpack::Decoder<'static>,
    pending: Option<Pending>,
    /// This connection's authority needs rewriting (decided by its first header block).
    rewriting: bool,
    eof: bool,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        AuthorityFix {
            inner,
            mode: Mode::Detect,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            out_pos: 0,
            decoder: loona_hpack::Decoder::new(),
            pending: None,
            rewriting: false,
            eof: false,
        }
    }

    /// Moves whatever can be processed from `inbuf` to `outbuf`.
    fn process(&mut self) -> io::Result<()> {
        loop {
            match self.mode {
                Mode::Detect => {
                    let n = self.inbuf.len().min(PREFACE.len());
                    if n == 0 {
                        return Ok(());
                    }
                    if self.inbuf[..n] != PREFACE[..n] {
                        self.mode = Mode::Passthrough;
                        continue;
                    }
                    if n < PREFACE.len() {
                        return Ok(());
                    }
                    self.outbuf.extend_from_slice(PREFACE);
                    self.inbuf.drain(..PREFACE.len());
                    self.mode = Mode::Http2;
                }
                Mode::Passthrough => {
                    self.outbuf.append(&mut self.inbuf);
                    return Ok(());
                }
                Mode::Http2 => {
                    if self.pending.is_none() && self.inbuf.is_empty() {
                        return Ok(());
                    }
                    if self.inbuf.len() < 9 {
                        return Ok(());
                    }
                    let len = u32::from_be_bytes([0, self.inbuf[0], self.inbuf[1], self.inbuf[2]]) as usize;
                    if self.inbuf.len() < 9 + len {
                        return Ok(());
                    }
                    let frame: Vec<u8> = self.inbuf.drain(..9 + len).collect();
                    self.frame(&frame)?;
                }
            }
        }
    }

    fn frame(&mut self, frame: &[u8]) -> io::Result<()> {
        let (kind, flags) = (frame[3], frame[4]);
        let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[9..];
        match kind {
            FRAME_HEADERS => {
                let mut p = payload;
                if flags & FLAG_PADDED != 0 {
                    let pad = *p.first().ok_or_else(|| bad("empty padded frame"))? as usize;
                    if p.len() < 1 + pad {
                        return Err(bad("bad padding"));
                    }
                    p = &p[1..p.len() - pad];
                }
                let priority = if flags & FLAG_PRIORITY != 0 {
                    let pr: [u8; 5] =
                        p.get(..5).and_then(|x| x.try_into().ok()).ok_or_else(|| bad("short priority"))?;
                    p = &p[5..];
                    Some(pr)
                } else {
                    None
                };
                self.pending = Some(Pending { raw: frame.to_vec(), stream, flags, priority, block: p.to_vec() });
                if flags & FLAG_END_HEADERS != 0 {
                    self.finish_block()?;
                }
            }
            FRAME_CONTINUATION => {
                let Some(pending) = self.pending.as_mut() else {
                    return Err(bad("unexpected CONTINUATION"));
                };
                if pending.stream != stream || pending.block.len() + payload.len() > MAX_BLOCK {
                    return Err(bad("bad CONTINUATION"));
                }
                pending.block.extend_from_slice(payload);
                pending.raw.extend_from_slice(frame);
                if flags & FLAG_END_HEADERS != 0 {
                    self.finish_block()?;
                }
            }
            _ => {
                if self.pending.is_some() {
                    return Err(bad("frame inside a header block"));
                }
                self.outbuf.extend_from_slice(frame);
            }
        }
        Ok(())
    }

    fn finish_block(&mut self) -> io::Result<()> {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        let headers = self.decoder.decode(&p.block).map_err(|e| bad(&format!("HPACK: {e:?}")))?;
        let bad_authority =
            headers.iter().any(|(n, v)| n.as_slice() == b":authority" && strip_scheme(v) != v.as_slice());
        if !self.rewriting && !bad_authority {
            self.outbuf.extend_from_slice(&p.raw);
            self.outbuf.append(&mut self.inbuf);
            self.mode = Mode::Passthrough;
            return Ok(());
        }
        self.rewriting = true;
        let mut block = Vec::with_capacity(p.block.len() + 64);
        for (name, value) in &headers {
            let value: &[u8] = if name.as_slice() == b":authority" { strip_scheme(value) } else { value };
            // Literal header field without indexing, new name (RFC 7541 6.2.2).
            block.push(0);
            encode_str(&mut block, name);
            encode_str(&mut block, value);
        }
        let mut first = true;
        let mut rest = block.as_slice();
        loop {
            let room = if first && p.priority.is_some() { MAX_FRAME - 5 } else { MAX_FRAME };
            let take = rest.len().min(room);
            let (chunk, tail) = rest.split_at(take);
            let last = tail.is_empty();
            let mut flags = if last { FLAG_END_HEADERS } else { 0 };
            let kind = if first { FRAME_HEADERS } else { FRAME_CONTINUATION };
            let mut body_len = chunk.len();
            if first {
                flags |= p.flags & FLAG_END_STREAM;
                if p.priority.is_some() {
                    flags |= FLAG_PRIORITY;
                    body_len += 5;
                }
            }
            self.outbuf.extend_from_slice(&(body_len as u32).to_be_bytes()[1..]);
            self.outbuf.push(kind);
            self.outbuf.push(flags);
            self.outbuf.extend_from_slice(&p.stream.to_be_bytes());
            if let (true, Some(pr)) = (first, p.priority) {
                self.outbuf.extend_from_slice(&pr);
            }
            self.outbuf.extend_from_slice(chunk);
            first = false;
            rest = tail;
            if last {
                return Ok(());
            }
        }
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// `http://host:port` -> `host:port`; anything else unchanged.
fn strip_scheme(v: &[u8]) -> &[u8] {
    match v.windows(3).position(|w| w == b"://") {
        Some(i) => {
            let rest = &v[i + 3..];
            match rest.iter().position(|&c| c == b'/') {
                Some(j) => &rest[..j],
                None => rest,
            }
        }
        None => v,
    }
}

fn encode_int(out: &mut Vec<u8>, mut v: usize, prefix_bits: u8) {
    let max = (1usize << prefix_bits) - 1;
    if v < max {
        out.push(v as u8);
        return;
    }
    out.push(max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128 + 128) as u8);
        v /= 128;
    }
    out.push(v as u8);
}

fn encode_str(out: &mut Vec<u8>, s: &[u8]) {
    encode_int(out, s.len(), 7);
    out.extend_from_slice(s);
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.out_pos < this.outbuf.len() {
                let n = (this.outbuf.len() - this.out_pos).min(buf.remaining());
                buf.put_slice(&this.outbuf[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.outbuf.len() {
                    this.outbuf.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if matches!(this.mode, Mode::Passthrough) && this.inbuf.is_empty() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut tmp = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut tmp);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let got = rb.filled();
                    if got.is_empty() {
                        this.eof = true;
                        // Flush what an incomplete frame left: h2 reports the truncation.
                        this.outbuf.append(&mut this.inbuf);
                        continue;
                    }
                    this.inbuf.extend_from_slice(got);
                    this.process()?;
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_is_stripped_from_authority() {
        assert_eq!(strip_scheme(b"http://127.0.0.2:2369"), b"127.0.0.2:2369");
        assert_eq!(strip_scheme(b"localhost:2379"), b"localhost:2379");
    }

    #[test]
    fn header_blocks_are_rewritten() {
        let mut enc = loona_hpack::Encoder::new();
        let headers: Vec<(&[u8], &[u8])> =
            vec![(b":method", b"POST"), (b":authority", b"http://127.0.0.1:1"), (b":path", b"/x")];
        let block = enc.encode(headers.clone());
        let mut frame = (block.len() as u32).to_be_bytes()[1..].to_vec();
        frame.extend_from_slice(&[FRAME_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 0, 0, 0, 1]);
        frame.extend_from_slice(&block);
        let mut fix = AuthorityFix::new(());
        fix.inbuf.extend_from_slice(PREFACE);
        fix.inbuf.extend_from_slice(&frame);
        fix.process().unwrap();
        let out = &fix.outbuf[PREFACE.len()..];
        assert_eq!(out[3], FRAME_HEADERS);
        assert_eq!(out[4], FLAG_END_HEADERS | FLAG_END_STREAM);
        let decoded = loona_hpack::Decoder::new().decode(&out[9..]).unwrap();
        assert_eq!(decoded[1], (b":authority".to_vec(), b"127.0.0.1:1".to_vec()));

        // The client's second block refers to its dynamic table; it is rewritten too.
        let block2 = enc.encode(headers);
        let mut frame2 = (block2.len() as u32).to_be_bytes()[1..].to_vec();
        frame2.extend_from_slice(&[FRAME_HEADERS, FLAG_END_HEADERS, 0, 0, 0, 3]);
        frame2.extend_from_slice(&block2);
        let before = fix.outbuf.len();
        fix.inbuf.extend_from_slice(&frame2);
        fix.process().unwrap();
        let decoded = loona_hpack::Decoder::new().decode(&fix.outbuf[before + 9..]).unwrap();
        assert_eq!(decoded[1], (b":authority".to_vec(), b"127.0.0.1:1".to_vec()));
    }

    #[test]
    fn good_authority_passes_through_untouched() {
        let block = loona_hpack::Encoder::new().encode(vec![(&b":authority"[..], &b"localhost:2379"[..])]);
        let mut input = PREFACE.to_vec();
        input.extend_from_slice(&(block.len() as u32).to_be_bytes()[1..]);
        input.extend_from_slice(&[FRAME_HEADERS, FLAG_END_HEADERS, 0, 0, 0, 1]);
        input.extend_from_slice(&block);
        input.extend_from_slice(b"\x00\x00\x00\x00rest");
        let mut fix = AuthorityFix::new(());
        fix.inbuf.extend_from_slice(&input);
        fix.process().unwrap();
        assert_eq!(fix.outbuf, input);
        assert!(matches!(fix.mode, Mode::Passthrough));
    }

    proptest::proptest! {
        /// Whatever a client sends after the preface (frames, header blocks, garbage), the
        /// rewriter answers with output or an error, never a panic.
        #[test]
        fn any_client_bytes_never_panic(frames in proptest::collection::vec(
            (0u8..12, proptest::num::u8::ANY, 0u32..8, proptest::collection::vec(proptest::num::u8::ANY, 0..64)),
            0..8,
        )) {
            let mut fix = AuthorityFix::new(());
            fix.inbuf.extend_from_slice(PREFACE);
            for (kind, flags, stream, payload) in frames {
                fix.inbuf.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
                fix.inbuf.extend_from_slice(&[kind, flags]);
                fix.inbuf.extend_from_slice(&stream.to_be_bytes());
                fix.inbuf.extend_from_slice(&payload);
            }
            let _ = fix.process();
        }

        /// Any bytes as a HEADERS block with a hostile `:authority` prefix mixed in.
        #[test]
        fn any_header_block_never_panics(block in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let mut fix = AuthorityFix::new(());
            fix.inbuf.extend_from_slice(PREFACE);
            fix.inbuf.extend_from_slice(&(block.len() as u32).to_be_bytes()[1..]);
            fix.inbuf.extend_from_slice(&[FRAME_HEADERS, FLAG_END_HEADERS, 0, 0, 0, 1]);
            fix.inbuf.extend_from_slice(&block);
            let _ = fix.process();
        }
    }
}
