//! The byte streams of etcd's peer protocol: a `message` stream is raft messages each after
//! its length (8 bytes, big-endian), as etcd's `messageEncoder` writes them; a `msgappv2`
//! stream (etcd's `msgAppV2Encoder`) carries MsgApp messages to one follower compactly: a
//! message whose log position follows the last one's, in the same term, is sent as its entries
//! and commit only. A stream of either kind carries etcd's link heartbeat (an empty
//! MsgHeartbeat) to keep an idle connection open; it is not a raft message.
//!
//! Decoders are incremental: they take bytes as they arrive and give back whole messages.

use bytes::{Buf, BytesMut};
use prost::Message as _;
use rustcd_api::raftpb::{Entry, Message, MessageType};

/// Largest message a stream accepts (etcd's `readBytesLimit`).
pub const READ_BYTES_LIMIT: u64 = 512 * 1024 * 1024;

const MSGAPPV2_LINK_HEARTBEAT: u8 = 0;
const MSGAPPV2_APP_ENTRIES: u8 = 1;
const MSGAPPV2_APP: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("rafthttp: error limit exceeded")]
    TooLarge,
    #[error("failed to parse type {0} in msgappv2 stream")]
    UnknownType(u8),
    #[error("undecodable raft message: {0}")]
    Decode(String),
}

/// etcd's link heartbeat: a MsgHeartbeat from and to no one, every field etcd writes zero.
pub fn link_heartbeat() -> Message {
    let empty = raft::eraftpb::Message { msg_type: raft::eraftpb::MessageType::MsgHeartbeat, ..Default::default() };
    // A heartbeat has nothing the translation could refuse.
    crate::etcd_wire::message_to_etcd(&empty).unwrap_or_default()
}

/// Whether `m` is etcd's link heartbeat rather than a raft message.
pub fn is_link_heartbeat(m: &Message) -> bool {
    m.r#type == Some(MessageType::MsgHeartbeat as i32) && m.from.unwrap_or(0) == 0 && m.to.unwrap_or(0) == 0
}

/// Appends `m` as a `message` stream (and a snapshot request's head) carries it.
pub fn encode_message(m: &Message, out: &mut Vec<u8>) {
    out.extend_from_slice(&(m.encoded_len() as u64).to_be_bytes());
    m.encode(out).unwrap_or_default();
}

/// Reads messages of a `message` stream as their bytes arrive.
#[derive(Default)]
pub struct MessageDecoder;

impl MessageDecoder {
    /// The next whole message in `buf` (consumed), or `None` until more bytes arrive.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, CodecError> {
        let Some(len) = peek_u64(buf, 0) else { return Ok(None) };
        if len > READ_BYTES_LIMIT {
            return Err(CodecError::TooLarge);
        }
        let len = len as usize;
        if buf.len() < 8 + len {
            buf.reserve(8 + len - buf.len());
            return Ok(None);
        }
        buf.advance(8);
        let body = buf.split_to(len);
        Message::decode(body.freeze()).map(Some).map_err(|e| CodecError::Decode(e.to_string()))
    }
}

fn peek_u64(buf: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = buf.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

/// Writes a `msgappv2` stream to one follower.
#[derive(Default)]
pub struct MsgAppV2Encoder {
    /// The term and last entry index of the last message written: a MsgApp that follows on
    /// from them goes as its entries only.
    term: u64,
    index: u64,
}

impl MsgAppV2Encoder {
    pub fn encode(&mut self, m: &Message, out: &mut Vec<u8>) {
        let (term, log_term, index) = (m.term.unwrap_or(0), m.log_term.unwrap_or(0), m.index.unwrap_or(0));
        if is_link_heartbeat(m) {
            out.push(MSGAPPV2_LINK_HEARTBEAT);
        } else if self.index == index && self.term == log_term && log_term == term {
            out.push(MSGAPPV2_APP_ENTRIES);
            out.extend_from_slice(&(m.entries.len() as u64).to_be_bytes());
            for e in &m.entries {
                out.extend_from_slice(&(e.encoded_len() as u64).to_be_bytes());
                e.encode(out).unwrap_or_default();
                self.index += 1;
            }
            out.extend_from_slice(&m.commit.unwrap_or(0).to_be_bytes());
        } else {
            out.push(MSGAPPV2_APP);
            encode_message(m, out);
            self.term = term;
            self.index = m.entries.last().and_then(|e| e.index).unwrap_or(index);
        }
    }
}

/// Reads a `msgappv2` stream from `remote` to `local`.
pub struct MsgAppV2Decoder {
    local: u64,
    remote: u64,
    term: u64,
    index: u64,
}

impl MsgAppV2Decoder {
    pub fn new(local: u64, remote: u64) -> Self {
        MsgAppV2Decoder { local, remote, term: 0, index: 0 }
    }

    /// The next whole message in `buf` (consumed), or `None` until more bytes arrive.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, CodecError> {
        let Some(&kind) = buf.first() else { return Ok(None) };
        match kind {
            MSGAPPV2_LINK_HEARTBEAT => {
                buf.advance(1);
                Ok(Some(link_heartbeat()))
            }
            MSGAPPV2_APP_ENTRIES => self.decode_entries(buf),
            MSGAPPV2_APP => {
                let Some(len) = peek_u64(buf, 1) else { return Ok(None) };
                if len > READ_BYTES_LIMIT {
                    return Err(CodecError::TooLarge);
                }
                let len = len as usize;
                if buf.len() < 9 + len {
                    return Ok(None);
                }
                buf.advance(9);
                let m = Message::decode(buf.split_to(len).freeze()).map_err(|e| CodecError::Decode(e.to_string()))?;
                self.term = m.term.unwrap_or(0);
                self.index = m.entries.last().and_then(|e| e.index).unwrap_or(m.index.unwrap_or(0));
                Ok(Some(m))
            }
            other => Err(CodecError::UnknownType(other)),
        }
    }

    /// A MsgApp sent as its entries: measured first, consumed only when whole.
    fn decode_entries(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, CodecError> {
        let Some(count) = peek_u64(buf, 1) else { return Ok(None) };
        let mut at = 9;
        let mut spans = Vec::new();
        for _ in 0..count {
            let Some(size) = peek_u64(buf, at) else { return Ok(None) };
            if size > READ_BYTES_LIMIT {
                return Err(CodecError::TooLarge);
            }
            let end = at + 8 + size as usize;
            if buf.len() < end {
                return Ok(None);
            }
            spans.push((at + 8, end));
            at = end;
        }
        let Some(commit) = peek_u64(buf, at) else { return Ok(None) };
        let whole = buf.split_to(at + 8).freeze();
        let entries = spans
            .into_iter()
            .map(|(from, to)| Entry::decode(whole.slice(from..to)).map_err(|e| CodecError::Decode(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let m = Message {
            r#type: Some(MessageType::MsgApp as i32),
            from: Some(self.remote),
            to: Some(self.local),
            term: Some(self.term),
            log_term: Some(self.term),
            index: Some(self.index),
            entries,
            commit: Some(commit),
            ..Default::default()
        };
        self.index += count;
        Ok(Some(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcd_wire::message_to_etcd;
    use crate::etcd_wire::tests::{hex, unhex};
    use raft::eraftpb;

    /// What etcd 3.4.23's rafthttp encoders (`messageEncoder`, `msgAppV2Encoder`) write for
    /// the messages the tests send, in hex.
    mod etcd {
        pub const MESSAGE_STREAM: &str = "000000000000001e08081002180120032800300040044a0a12080a0228001000180050005800000000000000001e08081000180020002800300040004a0a12080a0228001000180050005800";
        pub const MSGAPPV2_STREAM: &str = "0200000000000000290803100218012003280330053a0908001003180622010640054a0a12080a02280010001800500058000100000000000000020000000000000009080010031807220107000000000000000908001003180822010800000000000000070002000000000000001e08031002180120042803300840084a0a12080a0228001000180050005800";
    }

    fn etcd_message(
        t: eraftpb::MessageType,
        term: u64,
        log_term: u64,
        index: u64,
        entries: &[u64],
        commit: u64,
    ) -> Message {
        let entries = entries
            .iter()
            .map(|&i| eraftpb::Entry { term: 3, index: i, data: vec![i as u8].into(), ..Default::default() })
            .collect();
        let m = eraftpb::Message {
            msg_type: t,
            to: 2,
            from: 1,
            term,
            log_term,
            index,
            entries: protobuf::RepeatedField::from_vec(entries),
            commit,
            ..Default::default()
        };
        message_to_etcd(&m).expect("to etcd")
    }

    /// Every message in `bytes`, fed to `decode` one byte at a time.
    fn decode_all(
        bytes: &[u8],
        mut decode: impl FnMut(&mut BytesMut) -> Result<Option<Message>, CodecError>,
    ) -> Vec<Message> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in bytes {
            buf.extend_from_slice(&[*b]);
            while let Some(m) = decode(&mut buf).expect("decode") {
                out.push(m);
            }
        }
        assert!(buf.is_empty(), "every byte read");
        out
    }

    #[test]
    fn a_message_stream_is_etcds() {
        let heartbeat = etcd_message(eraftpb::MessageType::MsgHeartbeat, 3, 0, 0, &[], 4);
        let mut out = Vec::new();
        encode_message(&heartbeat, &mut out);
        encode_message(&link_heartbeat(), &mut out);
        assert_eq!(hex(&out), etcd::MESSAGE_STREAM);
        let mut d = MessageDecoder;
        let read = decode_all(&out, |b| d.decode(b));
        assert_eq!(read, vec![heartbeat, link_heartbeat()]);
        assert!(is_link_heartbeat(&read[1]) && !is_link_heartbeat(&read[0]));
    }

    #[test]
    fn a_msgappv2_stream_is_etcds() {
        use eraftpb::MessageType::MsgAppend;
        let sent = vec![
            etcd_message(MsgAppend, 3, 3, 5, &[6], 5),
            etcd_message(MsgAppend, 3, 3, 6, &[7, 8], 7),
            link_heartbeat(),
            etcd_message(MsgAppend, 4, 3, 8, &[], 8),
        ];
        let mut enc = MsgAppV2Encoder::default();
        let mut out = Vec::new();
        for m in &sent {
            enc.encode(m, &mut out);
        }
        assert_eq!(hex(&out), etcd::MSGAPPV2_STREAM);
        let mut d = MsgAppV2Decoder::new(2, 1);
        let read = decode_all(&unhex(etcd::MSGAPPV2_STREAM), |b| d.decode(b));
        assert_eq!(read.len(), 4);
        assert_eq!(read[0], sent[0]);
        // The compact form: the same raft message, without the fields it leaves out.
        let second = &read[1];
        assert_eq!(
            (second.from, second.to, second.term, second.log_term, second.index),
            (Some(1), Some(2), Some(3), Some(3), Some(6))
        );
        assert_eq!(second.entries, sent[1].entries);
        assert_eq!(second.commit, Some(7));
        assert!(is_link_heartbeat(&read[2]));
        assert_eq!(read[3], sent[3]);
    }

    #[test]
    fn bad_streams_are_errors() {
        let mut buf = BytesMut::from(&[9u8][..]);
        assert_eq!(MsgAppV2Decoder::new(1, 2).decode(&mut buf), Err(CodecError::UnknownType(9)));
        let mut huge = BytesMut::from(&u64::MAX.to_be_bytes()[..]);
        assert_eq!(MessageDecoder.decode(&mut huge), Err(CodecError::TooLarge));
    }
}
