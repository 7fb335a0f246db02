//! get, put, del, txn and compaction: flags to requests, as etcdctl's `ctlv3/command` builds them.

use rustcd_gocompat::prefix_end;
use std::io::BufRead;

use clap::{Args, Parser};
use rustcd_api::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use rustcd_api::etcdserverpb::range_request::{SortOrder, SortTarget};
use rustcd_api::etcdserverpb::request_op::Request;
use rustcd_api::etcdserverpb::{Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp};

use crate::CtlError;

#[derive(Args, Debug, Clone)]
pub struct GetArgs {
    /// Get keys with matching prefix
    #[arg(long)]
    pub prefix: bool,
    /// Get keys that are greater than or equal to the given key using byte compare
    #[arg(long = "from-key")]
    pub from_key: bool,
    /// Maximum number of results
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
    /// Specify the kv revision
    #[arg(long, default_value_t = 0)]
    pub rev: i64,
    /// Order of results; ASCEND or DESCEND (ASCEND by default)
    #[arg(long, default_value = "")]
    pub order: String,
    /// Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION
    #[arg(long = "sort-by", default_value = "")]
    pub sort_by: String,
    /// Linearizable(l) or Serializable(s)
    #[arg(long, default_value = "l")]
    pub consistency: String,
    /// Get only the keys
    #[arg(long = "keys-only")]
    pub keys_only: bool,
    /// Get only the count
    #[arg(long = "count-only")]
    pub count_only: bool,
    /// Only write values when using the "simple" output format
    #[arg(long = "print-value-only")]
    pub print_value_only: bool,
    /// Use the RangeStream RPC
    // (etcd 3.7's flag; a `--prefix` get uses it too whenever the server has it)
    #[arg(long)]
    pub stream: bool,
    pub args: Vec<String>,
}

/// Whether a get goes by RangeStream, and whether it falls back to Range when the server has
/// none: `--stream` always (no fall-back), a `--prefix` get in key order when the server has it.
/// Only key order: with another `--sort-by` and no `--order` a Range sorts ascending, where
/// RangeStream would sort each chunk on its own.
pub fn streamed(a: &GetArgs, req: &RangeRequest) -> Option<bool> {
    let key_order = req.sort_order == SortOrder::None as i32 && req.sort_target == SortTarget::Key as i32;
    if a.stream {
        Some(false)
    } else if a.prefix && key_order && !req.count_only {
        Some(true)
    } else {
        None
    }
}

#[derive(Args, Debug, Clone)]
pub struct PutArgs {
    /// lease ID (in hexadecimal) to attach to the key
    #[arg(long, default_value = "0")]
    pub lease: String,
    /// return the previous key-value pair before modification
    #[arg(long = "prev-kv")]
    pub prev_kv: bool,
    /// updates the key using its current value
    #[arg(long = "ignore-value")]
    pub ignore_value: bool,
    /// updates the key using its current lease
    #[arg(long = "ignore-lease")]
    pub ignore_lease: bool,
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct DelArgs {
    /// delete keys with matching prefix
    #[arg(long)]
    pub prefix: bool,
    /// return deleted key-value pairs
    #[arg(long = "prev-kv")]
    pub prev_kv: bool,
    /// delete keys that are greater than or equal to the given key using byte compare
    #[arg(long = "from-key")]
    pub from_key: bool,
    pub args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct TxnArgs {
    /// Input transaction in interactive mode
    #[arg(short, long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value_t = false)]
    pub interactive: bool,
}

#[derive(Args, Debug, Clone)]
pub struct CompactionArgs {
    /// 'true' to wait for compaction to physically remove all old revisions
    #[arg(long)]
    pub physical: bool,
    pub args: Vec<String>,
}

/// Key and range end for a key argument with `--prefix`/`--from-key` (clientv3's options).
fn key_range(key: &str, end: Option<&str>, prefix: bool, from_key: bool) -> (Vec<u8>, Vec<u8>) {
    let mut k = crate::arg_bytes(key);
    if prefix {
        if k.is_empty() {
            return (vec![0], vec![0]);
        }
        let e = prefix_end(&k);
        return (k, e);
    }
    if from_key {
        if k.is_empty() {
            k = vec![0];
        }
        return (k, vec![0]);
    }
    (k, end.map(crate::arg_bytes).unwrap_or_default())
}

/// `key [range_end]` with `--prefix`/`--from-key`, checked as etcdctl's get and del do.
fn check_range_args(cmd: &str, args: &[String], prefix: bool, from_key: bool) -> Result<(), CtlError> {
    if args.is_empty() || args.len() > 2 {
        return Err(CtlError::bad_args(&format!(
            "{cmd} command needs one argument as key and an optional argument as range_end"
        )));
    }
    if prefix && from_key {
        return Err(CtlError::bad_args("`--prefix` and `--from-key` cannot be set at the same time, choose one"));
    }
    if args.len() > 1 && (prefix || from_key) {
        return Err(CtlError::bad_args(
            "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
        ));
    }
    Ok(())
}

pub fn range_request(a: &GetArgs) -> Result<RangeRequest, CtlError> {
    check_range_args("get", &a.args, a.prefix, a.from_key)?;
    let serializable = match a.consistency.as_str() {
        "l" => false,
        "s" => true,
        other => return Err(CtlError::bad_feature(&format!("unknown consistency flag {other:?}"))),
    };
    let order = match a.order.to_uppercase().as_str() {
        "ASCEND" => SortOrder::Ascend,
        "DESCEND" => SortOrder::Descend,
        "" => SortOrder::None,
        _ => return Err(CtlError::bad_feature(&format!("bad sort order {}", a.order))),
    };
    let target = match a.sort_by.to_uppercase().as_str() {
        "CREATE" => SortTarget::Create,
        "KEY" | "" => SortTarget::Key,
        "MODIFY" => SortTarget::Mod,
        "VALUE" => SortTarget::Value,
        "VERSION" => SortTarget::Version,
        _ => return Err(CtlError::bad_feature(&format!("bad sort target {}", a.sort_by))),
    };
    // clientv3 drops an ascending sort by key: that is the server's natural order.
    let order = if target == SortTarget::Key && order == SortOrder::Ascend { SortOrder::None } else { order };
    let (key, range_end) = key_range(&a.args[0], a.args.get(1).map(String::as_str), a.prefix, a.from_key);
    Ok(RangeRequest {
        key: key.into(),
        range_end: range_end.into(),
        limit: a.limit,
        revision: a.rev,
        sort_order: order as i32,
        sort_target: target as i32,
        serializable,
        keys_only: a.keys_only,
        count_only: a.count_only,
        ..Default::default()
    })
}

pub fn put_request(a: &PutArgs, stdin: &mut dyn BufRead) -> Result<PutRequest, CtlError> {
    const NEEDS: &str = "put command needs 1 argument and input from stdin or 2 arguments";
    let Some(key) = a.args.first() else { return Err(CtlError::bad_args(NEEDS)) };
    if a.ignore_value && a.args.len() > 1 {
        return Err(CtlError::bad_args("put command needs only 1 argument when 'ignore-value' is set"));
    }
    let value = if a.ignore_value {
        Vec::new()
    } else if let Some(v) = a.args.get(1) {
        crate::arg_bytes(v)
    } else {
        let mut v = Vec::new();
        if stdin.read_to_end(&mut v).is_err() || v.is_empty() {
            return Err(CtlError::bad_args(NEEDS));
        }
        v
    };
    let lease = i64::from_str_radix(&a.lease, 16).map_err(|e| {
        CtlError::bad_args(&format!(
            "bad lease ID (strconv.ParseInt: parsing {:?}: {}), expecting ID in Hex",
            a.lease,
            go_parse_err(&e)
        ))
    })?;
    Ok(PutRequest {
        key: crate::arg_bytes(key).into(),
        value: value.into(),
        lease,
        prev_kv: a.prev_kv,
        ignore_value: a.ignore_value,
        ignore_lease: a.ignore_lease,
    })
}

fn go_parse_err(e: &std::num::ParseIntError) -> &'static str {
    match e.kind() {
        std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => "value out of range",
        _ => "invalid syntax",
    }
}

pub fn delete_request(a: &DelArgs) -> Result<DeleteRangeRequest, CtlError> {
    check_range_args("del", &a.args, a.prefix, a.from_key)?;
    let (key, range_end) = key_range(&a.args[0], a.args.get(1).map(String::as_str), a.prefix, a.from_key);
    Ok(DeleteRangeRequest { key: key.into(), range_end: range_end.into(), prev_kv: a.prev_kv })
}

pub fn compaction_revision(a: &CompactionArgs) -> Result<i64, CtlError> {
    if a.args.len() != 1 {
        return Err(CtlError::bad_args("compaction command needs 1 argument"));
    }
    a.args[0]
        .parse()
        .map_err(|_| CtlError::new(1, &format!("strconv.ParseInt: parsing {:?}: invalid syntax", a.args[0])))
}

/// One operation line of a txn (`put k v`, `get k --prefix`, `del k`), parsed as its command.
#[derive(Parser, Debug)]
#[command(no_binary_name = true)]
enum OpLine {
    Put(PutArgs),
    Get(GetArgs),
    Del(DelArgs),
}

/// Splits a line into words, honouring double and single quotes (etcdctl's `Argify`).
/// One escape of a Go string literal, after its backslash (etcdctl unquotes "..." words with
/// Go's rules): `\n`, `\t`, `\"`, `\\`, `\x23`, `\043`, `\u00e9`, ... A byte escape above
/// 0x7f, which would not be UTF-8 on its own, is taken as the code point of that value.
fn go_escape(chars: &mut std::str::Chars<'_>, out: &mut String) {
    let hex = |n: usize, chars: &mut std::str::Chars<'_>| {
        let digits: String = chars.by_ref().take(n).collect();
        u32::from_str_radix(&digits, 16).ok().and_then(char::from_u32)
    };
    let c = match chars.next() {
        Some('a') => Some('\u{7}'),
        Some('b') => Some('\u{8}'),
        Some('f') => Some('\u{c}'),
        Some('n') => Some('\n'),
        Some('r') => Some('\r'),
        Some('t') => Some('\t'),
        Some('v') => Some('\u{b}'),
        Some('x') => hex(2, chars),
        Some('u') => hex(4, chars),
        Some('U') => hex(8, chars),
        Some(d @ '0'..='7') => {
            let rest: String = chars.by_ref().take(2).collect();
            u32::from_str_radix(&format!("{d}{rest}"), 8).ok().and_then(char::from_u32)
        }
        other => other,
    };
    out.extend(c);
}

pub fn argify(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => go_escape(&mut chars, &mut cur),
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

fn parse_op(line: &str) -> Result<RequestOp, CtlError> {
    let words = argify(line);
    let op = OpLine::try_parse_from(&words).map_err(|_| CtlError::bad_args(&format!("invalid txn request: {line}")))?;
    let request = match op {
        OpLine::Put(a) => Request::RequestPut(put_request(&a, &mut std::io::empty())?),
        OpLine::Get(a) => Request::RequestRange(range_request(&a)?),
        OpLine::Del(a) => Request::RequestDeleteRange(delete_request(&a)?),
    };
    Ok(RequestOp { request: Some(request) })
}

/// `target("key") op "value"`, e.g. `mod("foo") > "100"`.
fn parse_compare(line: &str) -> Result<Compare, CtlError> {
    let bad = |why: &str| CtlError::bad_args(&format!("malformed comparison: {line}{why}"));
    let (target, rest) = line.split_once('(').ok_or_else(|| bad(""))?;
    let words = argify(rest);
    let [key, op, value] = words.as_slice() else { return Err(bad("")) };
    let key = key.strip_suffix(')').ok_or_else(|| bad(""))?;
    let result = match op.as_str() {
        "=" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        "<" => CompareResult::Less,
        ">" => CompareResult::Greater,
        _ => return Err(bad(&format!(" (unknown op {op})"))),
    };
    let int = || value.parse::<i64>().map_err(|_| bad(""));
    let (t, union) = match target {
        "ver" | "version" => (CompareTarget::Version, TargetUnion::Version(int()?)),
        "c" | "create" => (CompareTarget::Create, TargetUnion::CreateRevision(int()?)),
        "m" | "mod" => (CompareTarget::Mod, TargetUnion::ModRevision(int()?)),
        "val" | "value" => (CompareTarget::Value, TargetUnion::Value(crate::arg_bytes(value).into())),
        "lease" => (CompareTarget::Lease, TargetUnion::Lease(int()?)),
        _ => return Err(bad(&format!(" (unknown target {target})"))),
    };
    Ok(Compare {
        result: result as i32,
        target: t as i32,
        key: crate::arg_bytes(key).into(),
        target_union: Some(union),
        ..Default::default()
    })
}

/// A txn's compares, success ops and failure ops.
pub type TxnParts = (Vec<Compare>, Vec<RequestOp>, Vec<RequestOp>);

/// The compares, success ops and failure ops of a txn read from `input`, sections ending at a
/// blank line. With `interactive`, each section is announced on stdout as etcdctl does.
pub fn read_txn(input: &mut dyn BufRead, interactive: bool) -> Result<TxnParts, CtlError> {
    let mut section = |prompt: &str| -> Result<Vec<String>, CtlError> {
        if interactive {
            println!("{prompt}");
        }
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let n = input.read_line(&mut line).map_err(|e| CtlError::new(1, &e.to_string()))?;
            let line = line.trim_end_matches(['\n', '\r']).trim();
            if n == 0 || line.is_empty() {
                return Ok(lines);
            }
            lines.push(line.to_string());
        }
    };
    let compares = section("compares:")?.iter().map(|l| parse_compare(l)).collect::<Result<_, _>>()?;
    let success =
        section("success requests (get, put, del):")?.iter().map(|l| parse_op(l)).collect::<Result<_, _>>()?;
    let failure =
        section("failure requests (get, put, del):")?.iter().map(|l| parse_op(l)).collect::<Result<_, _>>()?;
    Ok((compares, success, failure))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txn_text_parses_like_etcdctl() {
        let text = "value(\"foo\") = \"bar 2\"\nmod(\"k\") > \"100\"\n\nput txnkey \"yes it is\"\nget foo --prefix\n\ndel x\n\n";
        let (cmp, ok, fail) = read_txn(&mut text.as_bytes(), false).expect("parses");
        assert_eq!(cmp.len(), 2);
        assert_eq!(cmp[0].target_union, Some(TargetUnion::Value(b"bar 2".to_vec().into())));
        assert_eq!(cmp[1].target_union, Some(TargetUnion::ModRevision(100)));
        assert_eq!(cmp[1].result, CompareResult::Greater as i32);
        let Some(Request::RequestPut(p)) = &ok[0].request else { panic!("put expected") };
        assert_eq!(&p.value[..], b"yes it is");
        let Some(Request::RequestRange(r)) = &ok[1].request else { panic!("get expected") };
        assert_eq!(&r.range_end[..], b"fop");
        assert_eq!(fail.len(), 1);
        assert!(parse_compare("bogus(\"k\") = \"1\"").is_err());
        assert!(parse_op("frob k").is_err());
    }

    /// etcd's e2e suite: `put "key \"with\" space" "value \x23"` stores `key "with" space`.
    #[test]
    fn quoted_words_unquote_as_go_strings() {
        assert_eq!(argify(r#"put "key \"with\" space" "value \x23""#), ["put", r#"key "with" space"#, "value #"]);
        assert_eq!(argify(r#""a\tb\n\u00e9\101" 'x y'"#), ["a\tb\né\u{41}", "x y"]);
    }

    #[test]
    fn prefix_and_from_key_ranges() {
        assert_eq!(key_range("a", None, true, false), (b"a".to_vec(), b"b".to_vec()));
        assert_eq!(key_range("", None, true, false), (vec![0], vec![0]));
        assert_eq!(key_range("", None, false, true), (vec![0], vec![0]));
        assert_eq!(prefix_end(&[b'a', 0xff]), vec![b'b']);
    }
}
