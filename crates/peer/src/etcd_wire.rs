//! etcd's raft messages on the wire (`rustcd_api::raftpb`, etcd's proto2 `raftpb`) and raft-rs's
//! (`eraftpb`), translated field by field: the first step of speaking etcd's peer protocol.
//!
//! The two are alike but for three things, each handled here:
//! - **`ConfChangeType`'s numbering**: etcd has AddNode 0, RemoveNode 1, UpdateNode 2,
//!   AddLearnerNode 3; raft-rs AddNode 0, RemoveNode 1, AddLearnerNode 2 and no UpdateNode. A
//!   conf change entry's data is a `ConfChange` encoded in its sender's numbering, so entries of
//!   that type are re-encoded on the way through. etcd's UpdateNode (its `member update`) has no
//!   raft-rs counterpart: inside rustcd it is a normal entry marked by its context
//!   ([`rustcd_raft::UPDATE_NODE_CONTEXT`]) whose data is etcd's conf change, and it becomes
//!   etcd's conf change entry here (and back).
//! - **fields only raft-rs has** (`Message.commit_term`, `request_snapshot`, `priority`,
//!   `Entry.context`): etcd's peers neither send nor read them. Sent as etcd's, a message loses
//!   them (raft-rs reads absent ones as zero, its value for a peer that predates them); any other
//!   entry context, which a proposal would lose silently, is refused.
//! - **proto2 presence**: etcd writes every field it declares non-nullable even when zero, so
//!   what goes out sets every such field, and the bytes are etcd's own (the tests compare them
//!   with etcd 3.4.23's encoder's).

use bytes::Bytes;
use prost::Message as _;
use protobuf::{Message as _, ProtobufEnum, RepeatedField, SingularPtrField};
use raft::eraftpb;
use rustcd_api::raftpb;
use rustcd_raft::UPDATE_NODE_CONTEXT;

/// A message or entry one side cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("etcd raft message: undecodable: {0}")]
    Decode(String),
    #[error("etcd raft message: unknown {what} {value}")]
    UnknownEnum { what: &'static str, value: i32 },
    #[error("etcd raft message: a conf change UpdateNode outside an entry")]
    UpdateNode,
    #[error("raft entry {0}: an entry context has no place in etcd's raft entries")]
    EntryContext(u64),
    #[error("conf change v2 entries are not supported yet")]
    ConfChangeV2,
}

/// raft-rs's message as etcd's peers encode it.
pub fn message_to_etcd(m: &eraftpb::Message) -> Result<raftpb::Message, WireError> {
    Ok(raftpb::Message {
        r#type: Some(m.msg_type.value()),
        to: Some(m.to),
        from: Some(m.from),
        term: Some(m.term),
        log_term: Some(m.log_term),
        index: Some(m.index),
        entries: m.entries.iter().map(entry_to_etcd).collect::<Result<_, _>>()?,
        commit: Some(m.commit),
        snapshot: Some(snapshot_to_etcd(m.snapshot.as_ref())),
        reject: Some(m.reject),
        reject_hint: Some(m.reject_hint),
        context: (!m.context.is_empty()).then(|| m.context.clone()),
    })
}

/// An etcd peer's message as raft-rs takes it.
pub fn message_from_etcd(m: raftpb::Message) -> Result<eraftpb::Message, WireError> {
    let msg_type = m.r#type.unwrap_or(0);
    let msg_type = eraftpb::MessageType::from_i32(msg_type)
        .ok_or(WireError::UnknownEnum { what: "message type", value: msg_type })?;
    let entries = m.entries.into_iter().map(entry_from_etcd).collect::<Result<Vec<_>, _>>()?;
    let mut out = eraftpb::Message {
        msg_type,
        to: m.to.unwrap_or(0),
        from: m.from.unwrap_or(0),
        term: m.term.unwrap_or(0),
        log_term: m.log_term.unwrap_or(0),
        index: m.index.unwrap_or(0),
        entries: RepeatedField::from_vec(entries),
        commit: m.commit.unwrap_or(0),
        reject: m.reject.unwrap_or(false),
        reject_hint: m.reject_hint.unwrap_or(0),
        context: m.context.unwrap_or_default(),
        ..Default::default()
    };
    if let Some(s) = m.snapshot.filter(|s| s != &empty_snapshot()) {
        out.snapshot = SingularPtrField::some(snapshot_from_etcd(s));
    }
    Ok(out)
}

/// raft-rs's entry as etcd's: a conf change entry's data re-encoded in etcd's numbering.
pub fn entry_to_etcd(e: &eraftpb::Entry) -> Result<raftpb::Entry, WireError> {
    let update_node = e.entry_type == eraftpb::EntryType::EntryNormal && e.context == UPDATE_NODE_CONTEXT;
    if update_node {
        return Ok(raftpb::Entry {
            r#type: Some(raftpb::EntryType::EntryConfChange as i32),
            term: Some(e.term),
            index: Some(e.index),
            data: Some(e.data.clone()),
        });
    }
    if !e.context.is_empty() {
        return Err(WireError::EntryContext(e.index));
    }
    let data = match e.entry_type {
        eraftpb::EntryType::EntryConfChange => {
            let cc = eraftpb::ConfChange::parse_from_bytes(&e.data).map_err(|x| WireError::Decode(x.to_string()))?;
            Bytes::from(conf_change_to_etcd(&cc).encode_to_vec())
        }
        eraftpb::EntryType::EntryConfChangeV2 => return Err(WireError::ConfChangeV2),
        eraftpb::EntryType::EntryNormal => e.data.clone(),
    };
    Ok(raftpb::Entry {
        r#type: Some(e.entry_type.value()),
        term: Some(e.term),
        index: Some(e.index),
        data: (!data.is_empty()).then_some(data),
    })
}

/// An etcd entry as raft-rs's: a conf change entry's data re-encoded in raft-rs's numbering.
pub fn entry_from_etcd(e: raftpb::Entry) -> Result<eraftpb::Entry, WireError> {
    let kind = e.r#type.unwrap_or(0);
    let entry_type =
        eraftpb::EntryType::from_i32(kind).ok_or(WireError::UnknownEnum { what: "entry type", value: kind })?;
    let data = e.data.unwrap_or_default();
    let data = match entry_type {
        eraftpb::EntryType::EntryConfChange => {
            let cc = raftpb::ConfChange::decode(data.clone()).map_err(|x| WireError::Decode(x.to_string()))?;
            if cc.r#type == Some(raftpb::ConfChangeType::ConfChangeUpdateNode as i32) {
                return Ok(eraftpb::Entry {
                    entry_type: eraftpb::EntryType::EntryNormal,
                    term: e.term.unwrap_or(0),
                    index: e.index.unwrap_or(0),
                    data,
                    context: Bytes::from_static(UPDATE_NODE_CONTEXT),
                    ..Default::default()
                });
            }
            let cc = conf_change_from_etcd(cc)?;
            Bytes::from(cc.write_to_bytes().map_err(|x| WireError::Decode(x.to_string()))?)
        }
        eraftpb::EntryType::EntryConfChangeV2 => return Err(WireError::ConfChangeV2),
        eraftpb::EntryType::EntryNormal => data,
    };
    Ok(eraftpb::Entry {
        entry_type,
        term: e.term.unwrap_or(0),
        index: e.index.unwrap_or(0),
        data,
        ..Default::default()
    })
}

/// raft-rs's conf change in etcd's numbering.
pub fn conf_change_to_etcd(cc: &eraftpb::ConfChange) -> raftpb::ConfChange {
    use raftpb::ConfChangeType as E;
    let kind = match cc.change_type {
        eraftpb::ConfChangeType::AddNode => E::ConfChangeAddNode,
        eraftpb::ConfChangeType::RemoveNode => E::ConfChangeRemoveNode,
        eraftpb::ConfChangeType::AddLearnerNode => E::ConfChangeAddLearnerNode,
    };
    raftpb::ConfChange {
        id: Some(cc.id),
        r#type: Some(kind as i32),
        node_id: Some(cc.node_id),
        context: (!cc.context.is_empty()).then(|| cc.context.clone()),
    }
}

/// An etcd conf change in raft-rs's numbering.
pub fn conf_change_from_etcd(cc: raftpb::ConfChange) -> Result<eraftpb::ConfChange, WireError> {
    use raftpb::ConfChangeType as E;
    let value = cc.r#type.unwrap_or(0);
    let change_type = match E::try_from(value) {
        Ok(E::ConfChangeAddNode) => eraftpb::ConfChangeType::AddNode,
        Ok(E::ConfChangeRemoveNode) => eraftpb::ConfChangeType::RemoveNode,
        Ok(E::ConfChangeAddLearnerNode) => eraftpb::ConfChangeType::AddLearnerNode,
        Ok(E::ConfChangeUpdateNode) => return Err(WireError::UpdateNode),
        Err(_) => return Err(WireError::UnknownEnum { what: "conf change type", value }),
    };
    Ok(eraftpb::ConfChange {
        change_type,
        node_id: cc.node_id.unwrap_or(0),
        context: cc.context.unwrap_or_default(),
        id: cc.id.unwrap_or(0),
        ..Default::default()
    })
}

/// raft-rs's hard state as etcd's (what etcd's WAL records).
pub fn hard_state_to_etcd(h: &eraftpb::HardState) -> raftpb::HardState {
    raftpb::HardState { term: Some(h.term), vote: Some(h.vote), commit: Some(h.commit) }
}

/// What etcd writes for a message without a snapshot: its non-nullable metadata, zero.
fn empty_snapshot() -> raftpb::Snapshot {
    snapshot_to_etcd(None)
}

fn snapshot_to_etcd(s: Option<&eraftpb::Snapshot>) -> raftpb::Snapshot {
    let meta = s.and_then(|s| s.metadata.as_ref());
    let cs = meta.and_then(|m| m.conf_state.as_ref());
    raftpb::Snapshot {
        data: s.map(|s| s.data.clone()).filter(|d| !d.is_empty()),
        metadata: Some(raftpb::SnapshotMetadata {
            conf_state: Some(raftpb::ConfState {
                voters: cs.map(|c| c.voters.clone()).unwrap_or_default(),
                learners: cs.map(|c| c.learners.clone()).unwrap_or_default(),
                voters_outgoing: cs.map(|c| c.voters_outgoing.clone()).unwrap_or_default(),
                learners_next: cs.map(|c| c.learners_next.clone()).unwrap_or_default(),
                auto_leave: Some(cs.is_some_and(|c| c.auto_leave)),
            }),
            index: Some(meta.map_or(0, |m| m.index)),
            term: Some(meta.map_or(0, |m| m.term)),
        }),
    }
}

fn snapshot_from_etcd(s: raftpb::Snapshot) -> eraftpb::Snapshot {
    let meta = s.metadata.unwrap_or_default();
    let cs = meta.conf_state.unwrap_or_default();
    let conf_state = eraftpb::ConfState {
        voters: cs.voters,
        learners: cs.learners,
        voters_outgoing: cs.voters_outgoing,
        learners_next: cs.learners_next,
        auto_leave: cs.auto_leave.unwrap_or(false),
        ..Default::default()
    };
    let metadata = eraftpb::SnapshotMetadata {
        conf_state: SingularPtrField::some(conf_state),
        index: meta.index.unwrap_or(0),
        term: meta.term.unwrap_or(0),
        ..Default::default()
    };
    eraftpb::Snapshot {
        data: s.data.unwrap_or_default(),
        metadata: SingularPtrField::some(metadata),
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// What etcd 3.4.23's raftpb encoder (`Marshal`, Debian's golang-etcd-server-dev) writes
    /// for the messages the tests build, in hex.
    mod etcd {
        pub const ENTRY_NORMAL: &str = "0800100218032203616263";
        pub const CONF_CHANGE_ADD_LEARNER: &str = "0807100318b4242203637478";
        pub const CONF_CHANGE_UPDATE: &str = "080010021809";
        pub const ENTRY_CONF_CHANGE: &str = "080110011801220c0807100318b4242203637478";
        pub const MSG_APP: &str =
            "0803100118022003280230053a0b080010021803220361626340044a0a12080a0228001000180050005800";
        pub const MSG_HEARTBEAT: &str = "08081001180220012800300040004a0a12080a0228001000180050005800";
        pub const MSG_APP_RESP_REJECT: &str = "08041002180120032800300440004a0a12080a0228001000180050015803620163";
        pub const MSG_SNAP: &str =
            "08071003180120022800300040004a160a04736e6170120e0a080801080210032800100a180250005800";
        pub const HARD_STATE: &str = "080310011809";
    }

    pub(crate) fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    pub(crate) fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }

    fn entry(term: u64, index: u64, data: &[u8]) -> eraftpb::Entry {
        eraftpb::Entry { term, index, data: Bytes::copy_from_slice(data), ..Default::default() }
    }

    fn learner_change() -> eraftpb::ConfChange {
        eraftpb::ConfChange {
            id: 7,
            change_type: eraftpb::ConfChangeType::AddLearnerNode,
            node_id: 0x1234,
            context: Bytes::from_static(b"ctx"),
            ..Default::default()
        }
    }

    fn message(msg_type: eraftpb::MessageType, to: u64, from: u64, term: u64) -> eraftpb::Message {
        eraftpb::Message { msg_type, to, from, term, ..Default::default() }
    }

    /// Out as etcd writes it, and back to the same raft-rs message.
    fn both_ways(m: &eraftpb::Message, etcd_hex: &str) {
        let wire = message_to_etcd(m).expect("to etcd").encode_to_vec();
        assert_eq!(hex(&wire), etcd_hex, "the bytes etcd writes");
        let back = message_from_etcd(raftpb::Message::decode(unhex(etcd_hex).as_slice()).expect("decode"));
        assert_eq!(back.as_ref(), Ok(m), "etcd's bytes read back");
    }

    #[test]
    fn entries_and_conf_changes_are_etcds_bytes() {
        let e = entry(2, 3, b"abc");
        assert_eq!(hex(&entry_to_etcd(&e).expect("entry").encode_to_vec()), etcd::ENTRY_NORMAL);
        assert_eq!(hex(&conf_change_to_etcd(&learner_change()).encode_to_vec()), etcd::CONF_CHANGE_ADD_LEARNER);

        let mut cc_entry = entry(1, 1, &learner_change().write_to_bytes().expect("encode"));
        cc_entry.entry_type = eraftpb::EntryType::EntryConfChange;
        let wire = entry_to_etcd(&cc_entry).expect("entry").encode_to_vec();
        assert_eq!(hex(&wire), etcd::ENTRY_CONF_CHANGE, "AddLearnerNode is 3 on etcd's wire, 2 in raft-rs");
        let back = entry_from_etcd(raftpb::Entry::decode(wire.as_slice()).expect("decode")).expect("entry");
        assert_eq!(back, cc_entry);
        let cc = eraftpb::ConfChange::parse_from_bytes(&back.data).expect("conf change");
        assert_eq!(cc.change_type, eraftpb::ConfChangeType::AddLearnerNode);
    }

    #[test]
    fn messages_are_etcds_bytes_both_ways() {
        let mut app = message(eraftpb::MessageType::MsgAppend, 1, 2, 3);
        (app.log_term, app.index, app.commit) = (2, 5, 4);
        app.entries = RepeatedField::from_vec(vec![entry(2, 3, b"abc")]);
        both_ways(&app, etcd::MSG_APP);

        both_ways(&message(eraftpb::MessageType::MsgHeartbeat, 1, 2, 1), etcd::MSG_HEARTBEAT);

        let mut reject = message(eraftpb::MessageType::MsgAppendResponse, 2, 1, 3);
        (reject.index, reject.reject, reject.reject_hint) = (4, true, 3);
        reject.context = Bytes::from_static(b"c");
        both_ways(&reject, etcd::MSG_APP_RESP_REJECT);

        let mut snap = message(eraftpb::MessageType::MsgSnapshot, 3, 1, 2);
        let conf_state = eraftpb::ConfState { voters: vec![1, 2], learners: vec![3], ..Default::default() };
        let metadata = eraftpb::SnapshotMetadata {
            conf_state: SingularPtrField::some(conf_state),
            index: 10,
            term: 2,
            ..Default::default()
        };
        snap.snapshot = SingularPtrField::some(eraftpb::Snapshot {
            data: Bytes::from_static(b"snap"),
            metadata: SingularPtrField::some(metadata),
            ..Default::default()
        });
        both_ways(&snap, etcd::MSG_SNAP);

        let hs = eraftpb::HardState { term: 3, vote: 1, commit: 9, ..Default::default() };
        assert_eq!(hex(&hard_state_to_etcd(&hs).encode_to_vec()), etcd::HARD_STATE);
    }

    #[test]
    fn an_update_node_entry_is_a_marked_normal_entry_inside_rustcd() {
        let data = unhex(etcd::CONF_CHANGE_UPDATE);
        let wire = raftpb::Entry {
            r#type: Some(raftpb::EntryType::EntryConfChange as i32),
            term: Some(3),
            index: Some(12),
            data: Some(Bytes::from(data.clone())),
        };
        let inside = entry_from_etcd(wire.clone()).expect("from etcd");
        assert_eq!(inside.entry_type, eraftpb::EntryType::EntryNormal);
        assert_eq!(inside.context.as_ref(), UPDATE_NODE_CONTEXT);
        assert_eq!(inside.data.as_ref(), data.as_slice(), "etcd's conf change, unchanged");
        assert_eq!(entry_to_etcd(&inside), Ok(wire), "back to etcd's conf change entry");
    }

    #[test]
    fn what_one_side_cannot_carry_is_refused() {
        let update = raftpb::ConfChange::decode(unhex(etcd::CONF_CHANGE_UPDATE).as_slice()).expect("decode");
        assert_eq!(conf_change_from_etcd(update.clone()), Err(WireError::UpdateNode));
        let mut with_context = entry(4, 9, b"x");
        with_context.context = Bytes::from_static(b"ctx");
        assert_eq!(entry_to_etcd(&with_context), Err(WireError::EntryContext(9)));
        let bad = raftpb::Message { r#type: Some(99), ..Default::default() };
        assert_eq!(message_from_etcd(bad), Err(WireError::UnknownEnum { what: "message type", value: 99 }));
        let garbage =
            raftpb::Entry { r#type: Some(1), data: Some(Bytes::from_static(&[0xff, 0xff])), ..Default::default() };
        assert!(matches!(entry_from_etcd(garbage), Err(WireError::Decode(_))));
    }
}
