//! `KV.Range` served by hand rather than by tonic, so that a large answer goes from the backend
//! into the reply as it is read instead of being built whole (etcd builds a range's answer
//! several times over: a known cause of running out of memory on Kubernetes lists).
//!
//! A gRPC message's length comes before its bytes. Each record the range returns is stored as
//! its `KeyValue` message, so the length is known from the records' sizes (a first pass over
//! the backend snapshot); the records then follow in 256 KiB chunks from a blocking thread, as
//! HTTP/2 flow control takes them. An answer up to 1 MiB is found in the first pass and sent
//! whole. The request side is tonic's: one uncompressed length-prefixed message of at most
//! `--max-request-bytes` (and gRPC's overhead), decoded with prost; errors are trailers-only
//! answers with etcd's codes and texts. Sorted, filtered and count-only ranges are built as
//! before ([`crate::etcdserver::v3`]).

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use http_body::Frame;
use http_body_util::StreamBody;
use prost::encoding::{self, WireType};
use rustcd_api::etcdserverpb::{RangeRequest, ResponseHeader};
use rustcd_mvcc::RangePlan;
use tokio::sync::mpsc;
use tonic::Status;

use crate::etcdserver::server::EtcdServer;

pub const PATH: &str = "/etcdserverpb.KV/Range";

/// Answers up to this size are read in the first pass and sent in one piece.
const WHOLE_UP_TO: usize = 1 << 20;
/// The size of a streamed answer's pieces.
const CHUNK: usize = 256 << 10;
/// grpc-go's default largest message a server sends (math.MaxInt32).
const MAX_SEND: usize = i32::MAX as usize;

type Frames = mpsc::Receiver<Result<Frame<Bytes>, Infallible>>;

pub async fn handle(State(s): State<Arc<EtcdServer>>, req: Request) -> Response {
    let max = super::unary::max_request(&s);
    let caller = crate::api::caller::of_http(&req);
    let answer = async {
        let r: RangeRequest = super::unary::read_request(req, max).await?;
        let answer = if rustcd_mvcc::plannable(&r) {
            let mut planned = s.range_plan(&caller, r, Planned::measure).await?;
            planned.header = s.header(planned.plan.current_rev);
            Answer::Planned(Box::new(planned))
        } else {
            Answer::Whole(s.range(&caller, r).await?)
        };
        reply(answer)
    };
    answer.await.unwrap_or_else(|status: Status| status.into_http())
}

/// A Range's answer: built whole, or planned.
pub enum Answer {
    Whole(rustcd_api::etcdserverpb::RangeResponse),
    Planned(Box<Planned>),
}

/// A planned range, after its first pass: each entry's size, and the entries themselves while
/// they add up to [`WHOLE_UP_TO`].
pub struct Planned {
    pub plan: RangePlan,
    pub header: Option<ResponseHeader>,
    sizes: Vec<usize>,
    first: Vec<Bytes>,
}

impl Planned {
    /// The first pass over `plan` (on a blocking thread: it reads the backend).
    pub fn measure(plan: RangePlan) -> Result<Planned, rustcd_mvcc::Error> {
        let (mut sizes, mut first, mut kept) = (Vec::with_capacity(plan.len()), Vec::new(), 0);
        for i in 0..plan.len() {
            if first.len() == i && kept < WHOLE_UP_TO {
                let e = plan.entry(i)?;
                kept += e.len();
                sizes.push(e.len());
                first.push(e);
            } else {
                sizes.push(plan.entry_len(i)?);
            }
        }
        Ok(Planned { plan, header: None, sizes, first })
    }

    /// The message's length: header, each entry as field 2, `more`, `count`.
    fn message_len(&self) -> usize {
        let header = self.header.as_ref().map_or(0, |h| encoding::message::encoded_len(1, h));
        let kvs: usize = self.sizes.iter().map(|n| 1 + encoding::encoded_len_varint(*n as u64) + n).sum();
        let more = if self.plan.more { encoding::bool::encoded_len(3, &true) } else { 0 };
        let count = if self.plan.count != 0 { encoding::int64::encoded_len(4, &self.plan.count) } else { 0 };
        header + kvs + more + count
    }

    /// The gRPC frame prefix and the header field.
    fn start(&self, len: usize, buf: &mut BytesMut) {
        super::unary::frame_prefix(len, buf);
        if let Some(h) = &self.header {
            encoding::message::encode(1, h, buf);
        }
    }

    /// One returned record as field 2.
    fn entry(entry: &[u8], buf: &mut BytesMut) {
        Self::entry_head(entry.len(), buf);
        buf.put_slice(entry);
    }

    /// Field 2's tag and the length of a record of `len` bytes.
    fn entry_head(len: usize, buf: &mut BytesMut) {
        encoding::encode_key(2, WireType::LengthDelimited, buf);
        encoding::encode_varint(len as u64, buf);
    }

    fn end(&self, buf: &mut BytesMut) {
        if self.plan.more {
            encoding::bool::encode(3, &true, buf);
        }
        if self.plan.count != 0 {
            encoding::int64::encode(4, &self.plan.count, buf);
        }
    }
}

fn trailers(status: &Status) -> Frame<Bytes> {
    Frame::trailers(super::unary::trailers(status))
}

fn response(frames: Frames) -> Response {
    super::unary::grpc_response(Body::new(StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(frames))))
}

fn reply(answer: Answer) -> Result<Response, Status> {
    let p = match answer {
        Answer::Planned(p) => *p,
        Answer::Whole(resp) => return Ok(super::unary::one_message(&resp)),
    };
    let len = p.message_len();
    if len > MAX_SEND {
        return Err(Status::resource_exhausted(format!(
            "grpc: trying to send message larger than max ({len} vs. {MAX_SEND})"
        )));
    }
    if p.first.len() == p.plan.len() {
        let mut buf = BytesMut::with_capacity(5 + len);
        p.start(len, &mut buf);
        for e in &p.first {
            Planned::entry(e, &mut buf);
        }
        p.end(&mut buf);
        return Ok(super::unary::one_frame(buf.freeze()));
    }
    let (tx, rx) = mpsc::channel(2);
    tokio::task::spawn_blocking(move || stream(p, len, tx));
    Ok(response(rx))
}

/// The second pass: the answer in chunks, then its trailers; stops when the client goes away.
fn stream(p: Planned, len: usize, tx: mpsc::Sender<Result<Frame<Bytes>, Infallible>>) {
    let send = |b: Bytes| tx.blocking_send(Ok(Frame::data(b))).is_ok();
    let mut buf = BytesMut::with_capacity(CHUNK + 64);
    p.start(len, &mut buf);
    for i in 0..p.plan.len() {
        let e = match p.first.get(i) {
            Some(e) => e.clone(),
            None => match p.plan.entry(i) {
                Ok(e) if e.len() == p.sizes[i] => e,
                Ok(_) => {
                    let _ = tx.blocking_send(Ok(trailers(&Status::internal("range entry changed size"))));
                    return;
                }
                Err(e) => {
                    let _ = tx.blocking_send(Ok(trailers(&Status::internal(e.to_string()))));
                    return;
                }
            },
        };
        if e.len() >= CHUNK {
            // A large record goes out as it is, after what is buffered.
            Planned::entry_head(e.len(), &mut buf);
            if !send(buf.split().freeze()) || !send(e) {
                return;
            }
            continue;
        }
        Planned::entry(&e, &mut buf);
        if buf.len() >= CHUNK && !send(buf.split().freeze()) {
            return;
        }
    }
    p.end(&mut buf);
    if send(buf.split().freeze()) {
        let _ = tx.blocking_send(Ok(trailers(&Status::ok(""))));
    }
}
