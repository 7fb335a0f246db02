//! etcdctl's output formats (`-w simple|json|fields|table`) for each response, as etcd's
//! `printer_*.go` print them. Functions return the text; the caller writes it.

use std::fmt::Write;

use rustcd_api::etcdserverpb::response_op::Response;
use rustcd_api::etcdserverpb::{
    DeleteRangeResponse, Member, PutResponse, RangeResponse, ResponseHeader, ResponseOp, TxnResponse,
};
use rustcd_api::mvccpb::{Event, KeyValue};

use crate::CtlError;
use crate::json::{Obj, quote, string};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Simple,
    Json,
    Fields,
    Table,
    Protobuf,
}

impl Format {
    /// Fails for `table`, which etcdctl only draws for the member and endpoint commands.
    pub fn check_kv(self) -> Result<(), CtlError> {
        if self == Format::Table {
            return Err(CtlError::bad_feature("table not supported as output format"));
        }
        Ok(())
    }

    /// Fails for `protobuf`, which etcdctl does not print for the endpoint commands.
    pub fn check_not_protobuf(self) -> Result<(), CtlError> {
        if self == Format::Protobuf {
            return Err(CtlError::bad_feature("protobuf not supported as output format"));
        }
        Ok(())
    }

    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "simple" => Format::Simple,
            "json" => Format::Json,
            "fields" => Format::Fields,
            "table" => Format::Table,
            "protobuf" => Format::Protobuf,
            _ => return None,
        })
    }
}

/// How keys and values are shown by the simple printer.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvStyle {
    pub hex: bool,
    pub value_only: bool,
}

fn text(b: &[u8], hex: bool) -> String {
    if hex { b.iter().map(|x| format!("\\x{x:02x}")).collect() } else { String::from_utf8_lossy(b).into_owned() }
}

pub fn simple_kv(out: &mut String, kv: &KeyValue, style: KvStyle) {
    if !style.value_only {
        out.push_str(&text(&kv.key, style.hex));
        out.push('\n');
    }
    out.push_str(&text(&kv.value, style.hex));
    out.push('\n');
}

// ---- JSON of protobuf messages, as Go's encoding/json writes etcd's structs ----

pub fn header_json(h: &ResponseHeader) -> String {
    Obj::new()
        .int("cluster_id", h.cluster_id)
        .int("member_id", h.member_id)
        .int("revision", h.revision)
        .int("raft_term", h.raft_term)
        .end()
}

fn header(h: &Option<ResponseHeader>) -> Option<String> {
    h.as_ref().map(header_json)
}

pub fn kv_json(kv: &KeyValue) -> String {
    Obj::new()
        .bytes("key", &kv.key)
        .int("create_revision", kv.create_revision)
        .int("mod_revision", kv.mod_revision)
        .int("version", kv.version)
        .bytes("value", &kv.value)
        .int("lease", kv.lease)
        .end()
}

pub fn event_json(e: &Event) -> String {
    Obj::new()
        .int("type", e.r#type)
        .obj("kv", e.kv.as_ref().map(kv_json))
        .obj("prev_kv", e.prev_kv.as_ref().map(kv_json))
        .end()
}

pub fn range_json(r: &RangeResponse) -> String {
    Obj::new()
        .obj("header", header(&r.header))
        .list("kvs", r.kvs.iter().map(kv_json).collect())
        .bool("more", r.more)
        .int("count", r.count)
        .end()
}

pub fn put_json(r: &PutResponse) -> String {
    Obj::new().obj("header", header(&r.header)).obj("prev_kv", r.prev_kv.as_ref().map(kv_json)).end()
}

pub fn del_json(r: &DeleteRangeResponse) -> String {
    Obj::new()
        .obj("header", header(&r.header))
        .int("deleted", r.deleted)
        .list("prev_kvs", r.prev_kvs.iter().map(kv_json).collect())
        .end()
}

fn op_json(op: &ResponseOp) -> String {
    let inner = match &op.response {
        Some(Response::ResponseRange(r)) => Some(Obj::new().raw("ResponseRange", &range_json(r)).end()),
        Some(Response::ResponsePut(r)) => Some(Obj::new().raw("ResponsePut", &put_json(r)).end()),
        Some(Response::ResponseDeleteRange(r)) => Some(Obj::new().raw("ResponseDeleteRange", &del_json(r)).end()),
        Some(Response::ResponseTxn(r)) => Some(Obj::new().raw("ResponseTxn", &txn_json(r)).end()),
        None => None,
    };
    Obj::new().obj("Response", inner).end()
}

pub fn txn_json(r: &TxnResponse) -> String {
    Obj::new()
        .obj("header", header(&r.header))
        .bool("succeeded", r.succeeded)
        .list("responses", r.responses.iter().map(op_json).collect())
        .end()
}

pub fn member_json(m: &Member) -> String {
    Obj::new()
        .int("ID", m.id)
        .str("name", &m.name)
        .list("peerURLs", m.peer_ur_ls.iter().map(|u| string(u)).collect())
        .list("clientURLs", m.client_ur_ls.iter().map(|u| string(u)).collect())
        .bool("isLearner", m.is_learner)
        .end()
}

// ---- per-response printers ----

/// A message's protobuf encoding, as `-w protobuf` prints it (raw bytes; lossy only in a
/// `String`, so callers write it with [`write_raw`]).
pub fn protobuf<M: prost::Message>(m: &M) -> Vec<u8> {
    m.encode_to_vec()
}

/// Writes bytes to stdout as they are.
pub fn write_raw(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

/// Prints a response that etcdctl shows as text, as its protobuf-generated JSON, or as bytes.
pub fn emit<M: prost::Message>(f: Format, resp: &M, json: impl FnOnce() -> String, simple: impl FnOnce() -> String) {
    match f {
        Format::Json => println!("{}", json()),
        Format::Protobuf => write_raw(&protobuf(resp)),
        _ => print!("{}", simple()),
    }
}

/// `{"header":...}` plus the given fields, the JSON of most responses.
pub fn with_header(h: &Option<ResponseHeader>, rest: impl FnOnce(Obj) -> Obj) -> String {
    rest(Obj::new().obj("header", header(h))).end()
}

pub fn get(f: Format, r: &RangeResponse, style: KvStyle) -> String {
    let mut out = String::new();
    match f {
        Format::Protobuf => write_raw(&protobuf(r)),
        Format::Json => out = range_json(r) + "\n",
        Format::Fields => {
            fields_header(&mut out, &r.header);
            for kv in &r.kvs {
                fields_kv(&mut out, "", kv);
            }
            let _ = writeln!(out, "\"More\" : {}", r.more);
            let _ = writeln!(out, "\"Count\" : {}", r.count);
        }
        Format::Simple | Format::Table => r.kvs.iter().for_each(|kv| simple_kv(&mut out, kv, style)),
    }
    out
}

pub fn put(f: Format, r: &PutResponse, style: KvStyle) -> String {
    let mut out = String::new();
    match f {
        Format::Protobuf => write_raw(&protobuf(r)),
        Format::Json => out = put_json(r) + "\n",
        Format::Fields => {
            fields_header(&mut out, &r.header);
            if let Some(kv) = &r.prev_kv {
                fields_kv(&mut out, "Prev", kv);
            }
        }
        Format::Simple | Format::Table => {
            out.push_str("OK\n");
            if let Some(kv) = &r.prev_kv {
                simple_kv(&mut out, kv, style);
            }
        }
    }
    out
}

pub fn del(f: Format, r: &DeleteRangeResponse, style: KvStyle) -> String {
    let mut out = String::new();
    match f {
        Format::Protobuf => write_raw(&protobuf(r)),
        Format::Json => out = del_json(r) + "\n",
        Format::Fields => {
            fields_header(&mut out, &r.header);
            let _ = writeln!(out, "\"Deleted\" : {}", r.deleted);
            for kv in &r.prev_kvs {
                fields_kv(&mut out, "Prev", kv);
            }
        }
        Format::Simple | Format::Table => {
            let _ = writeln!(out, "{}", r.deleted);
            r.prev_kvs.iter().for_each(|kv| simple_kv(&mut out, kv, style));
        }
    }
    out
}

pub fn txn(f: Format, r: &TxnResponse, style: KvStyle) -> String {
    let mut out = String::new();
    match f {
        Format::Protobuf => write_raw(&protobuf(r)),
        Format::Json => out = txn_json(r) + "\n",
        Format::Fields => {
            fields_header(&mut out, &r.header);
            let _ = writeln!(out, "\"Succeeded\" : {}", r.succeeded);
            for op in &r.responses {
                match &op.response {
                    Some(Response::ResponseRange(x)) => out.push_str(&get(f, x, style)),
                    Some(Response::ResponsePut(x)) => out.push_str(&put(f, x, style)),
                    Some(Response::ResponseDeleteRange(x)) => out.push_str(&del(f, x, style)),
                    _ => {}
                }
            }
        }
        Format::Simple | Format::Table => {
            out.push_str(if r.succeeded { "SUCCESS\n" } else { "FAILURE\n" });
            for op in &r.responses {
                out.push('\n');
                match &op.response {
                    Some(Response::ResponseRange(x)) => out.push_str(&get(f, x, style)),
                    Some(Response::ResponsePut(x)) => out.push_str(&put(f, x, style)),
                    Some(Response::ResponseDeleteRange(x)) => out.push_str(&del(f, x, style)),
                    _ => {}
                }
            }
        }
    }
    out
}

/// One watch response (clientv3's `WatchResponse`, whose JSON has Go's field names).
pub fn watch(
    f: Format,
    h: &Option<ResponseHeader>,
    events: &[Event],
    compact: i64,
    canceled: bool,
    style: KvStyle,
) -> String {
    let mut out = String::new();
    match f {
        Format::Protobuf => events.iter().for_each(|e| write_raw(&protobuf(e))),
        Format::Json => {
            let hdr = header_json(&h.unwrap_or_default());
            let evs = events.iter().map(event_json).collect::<Vec<_>>().join(",");
            let evs = if events.is_empty() { "null".to_string() } else { format!("[{evs}]") };
            let _ = writeln!(
                out,
                "{{\"Header\":{hdr},\"Events\":{evs},\"CompactRevision\":{compact},\"Canceled\":{canceled},\"Created\":false}}"
            );
        }
        Format::Fields => {
            fields_header(&mut out, h);
            for e in events {
                let _ = writeln!(out, "\"Type\" : {}", event_type(e));
                if let Some(kv) = &e.prev_kv {
                    fields_kv(&mut out, "Prev", kv);
                }
                fields_kv(&mut out, "", &e.kv.clone().unwrap_or_default());
            }
        }
        Format::Simple | Format::Table => {
            for e in events {
                let _ = writeln!(out, "{}", event_type(e));
                if let Some(kv) = &e.prev_kv {
                    simple_kv(&mut out, kv, style);
                }
                simple_kv(&mut out, &e.kv.clone().unwrap_or_default(), style);
            }
        }
    }
    out
}

fn event_type(e: &Event) -> &'static str {
    if e.r#type == 1 { "DELETE" } else { "PUT" }
}

pub fn fields_header(out: &mut String, h: &Option<ResponseHeader>) {
    let h = h.unwrap_or_default();
    let _ = writeln!(out, "\"ClusterID\" : {}", h.cluster_id);
    let _ = writeln!(out, "\"MemberID\" : {}", h.member_id);
    let _ = writeln!(out, "\"Revision\" : {}", h.revision);
    let _ = writeln!(out, "\"RaftTerm\" : {}", h.raft_term);
}

fn fields_kv(out: &mut String, pfx: &str, kv: &KeyValue) {
    let _ = writeln!(out, "\"{pfx}Key\" : {}", quote(&kv.key));
    let _ = writeln!(out, "\"{pfx}CreateRevision\" : {}", kv.create_revision);
    let _ = writeln!(out, "\"{pfx}ModRevision\" : {}", kv.mod_revision);
    let _ = writeln!(out, "\"{pfx}Version\" : {}", kv.version);
    let _ = writeln!(out, "\"{pfx}Value\" : {}", quote(&kv.value));
    let _ = writeln!(out, "\"{pfx}Lease\" : {}", kv.lease);
}

/// etcd's tables (the offline tools draw the same ones).
pub use rustcd_utl::print::table;
