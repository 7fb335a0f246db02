//! DNS SRV discovery, as etcd's `client/pkg/srv`: the members of a cluster published as SRV
//! records of a domain. [`get_client`] finds client endpoints (`_etcd-client._tcp.<domain>`,
//! etcdctl's `--discovery-srv`); [`get_cluster`] finds the initial cluster a new member
//! bootstraps from (`_etcd-server._tcp.<domain>`, etcd's `--discovery-srv`).
//!
//! The lookup is a plain DNS query over UDP (TCP when the answer is truncated) to the
//! nameservers of `/etc/resolv.conf`, as Go's resolver does; host names in the records are
//! resolved with the system resolver. Answers are parsed defensively: a malformed one is an
//! error, never a panic.

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::Duration;

/// One SRV record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Srv {
    /// With its trailing dot, as DNS gives it.
    pub target: String,
    pub port: u16,
    pub priority: u16,
    pub weight: u16,
}

/// The SRV service name etcd queries: `etcd-server` becomes `etcd-server-ssl` for https, then
/// `-<service name>` is appended when one is given.
pub fn service_name(service: &str, suffix: &str, scheme: &str) -> String {
    let s = if scheme == "https" { format!("{service}-ssl") } else { service.to_string() };
    if suffix.is_empty() { s } else { format!("{s}-{suffix}") }
}

/// etcd's `srv.GetClient`: client endpoints from `_<service>-ssl._tcp` (https) and
/// `_<service>._tcp` (http) of `domain`; an error only when both lookups fail.
pub fn get_client(service: &str, domain: &str, suffix: &str) -> Result<Vec<String>, String> {
    let mut endpoints = Vec::new();
    let mut errors = Vec::new();
    for scheme in ["https", "http"] {
        match lookup_srv(&service_name(service, suffix, scheme), domain) {
            Ok(records) => endpoints.extend(records.iter().map(|r| format!("{scheme}://{}:{}", r.target, r.port))),
            Err(e) => errors.push(e),
        }
    }
    if errors.len() == 2 {
        return Err(format!("dns lookup errors: {} and {}", errors[0], errors[1]));
    }
    Ok(endpoints)
}

/// etcd's `srv.GetCluster`: `name=scheme://target:port` for every record of `_<service>._tcp`
/// of `domain`. The record whose address is one of `advertised` (this member's peer URLs) gets
/// `name`; the others are numbered from 0.
pub fn get_cluster(
    scheme: &str,
    service: &str,
    name: &str,
    domain: &str,
    advertised: &[String],
) -> Result<Vec<String>, String> {
    let mut mine = Vec::new();
    for u in advertised {
        let host = u.split_once("://").map_or(u.as_str(), |(_, rest)| rest).trim_end_matches('/');
        let addr = resolve(host)?;
        mine.push((addr, u.clone()));
    }
    let records =
        lookup_srv(service, domain).map_err(|e| format!("error querying DNS SRV records for _{service} {e}"))?;
    let (mut parts, mut last_err, mut temp_name) = (Vec::new(), None, 0);
    for r in records {
        let short = r.target.trim_end_matches('.');
        let addr = match resolve(&format!("{}:{}", r.target, r.port)) {
            Ok(a) => a,
            Err(e) => {
                last_err = Some(e);
                continue;
            }
        };
        let url_host =
            if short.contains(':') { format!("[{short}]:{}", r.port) } else { format!("{short}:{}", r.port) };
        match mine.iter().find(|(a, _)| *a == addr) {
            Some((_, u)) if !u.starts_with(&format!("{scheme}://")) => {
                last_err = Some(format!(
                    "bootstrap at {scheme}://{url_host} from DNS for {service} has scheme mismatch with expected peer {u}"
                ));
            }
            Some(_) => parts.push(format!("{name}={scheme}://{url_host}")),
            None => {
                parts.push(format!("{temp_name}={scheme}://{url_host}"));
                temp_name += 1;
            }
        }
    }
    match (parts.is_empty(), last_err) {
        (true, Some(e)) => Err(format!("error querying DNS SRV records for _{service} {e}")),
        _ => Ok(parts),
    }
}

/// `host:port` to its first address (IPv4 first, as Go's `ResolveTCPAddr`).
fn resolve(host_port: &str) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> = host_port.to_socket_addrs().map_err(|e| format!("lookup {host_port}: {e}"))?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("lookup {host_port}: no such host"))
}

/// Go's `net.LookupSRV(service, "tcp", domain)`: the records of `_service._tcp.domain.`, by
/// priority, then heavier weight first.
pub fn lookup_srv(service: &str, domain: &str) -> Result<Vec<Srv>, String> {
    let name = format!("_{service}._tcp.{}.", domain.trim_end_matches('.'));
    let servers = nameservers();
    let mut last = format!("lookup {name}: no nameserver");
    for ns in &servers {
        match query(*ns, &name) {
            Ok(mut records) => {
                records.sort_by_key(|r| (r.priority, std::cmp::Reverse(r.weight)));
                return Ok(records);
            }
            Err(e) => last = format!("lookup {name} on {ns}: {e}"),
        }
    }
    Err(last)
}

/// The nameservers of `/etc/resolv.conf` (Go's default, 127.0.0.1:53, when it names none).
fn nameservers() -> Vec<SocketAddr> {
    let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut out: Vec<SocketAddr> = conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    if out.is_empty() {
        out.push(SocketAddr::from(([127, 0, 0, 1], 53)));
    }
    out
}

const TYPE_SRV: u16 = 33;
const TIMEOUT: Duration = Duration::from_secs(5);

/// One SRV query to one nameserver: UDP, then TCP when the answer came truncated.
fn query(ns: SocketAddr, name: &str) -> Result<Vec<Srv>, String> {
    let id = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos()
        & 0xffff) as u16;
    let q = encode_query(id, name)?;
    let bind: SocketAddr =
        if ns.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { (std::net::Ipv6Addr::UNSPECIFIED, 0).into() };
    let sock = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    sock.connect(ns).map_err(|e| e.to_string())?;
    sock.send(&q).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    let answer = loop {
        let n = sock.recv(&mut buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock { "i/o timeout".into() } else { e.to_string() }
        })?;
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            break &buf[..n];
        }
    };
    match parse_answer(id, answer) {
        Err(Answer::Truncated) => query_tcp(ns, id, &q),
        r => r.map_err(|e| e.to_string()),
    }
}

fn query_tcp(ns: SocketAddr, id: u16, q: &[u8]) -> Result<Vec<Srv>, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&ns, TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(q);
    s.write_all(&framed).map_err(|e| e.to_string())?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).map_err(|e| e.to_string())?;
    let mut answer = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut answer).map_err(|e| e.to_string())?;
    parse_answer(id, &answer).map_err(|e| e.to_string())
}

/// A query for the SRV records of `name` (absolute, ending in a dot), recursion desired.
pub fn encode_query(id: u16, name: &str) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("invalid domain name {name:?}"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&TYPE_SRV.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    Ok(q)
}

/// Why an answer gave no records.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Answer {
    #[error("no such host")]
    NoSuchHost,
    #[error("server misbehaving")]
    Misbehaving,
    #[error("truncated answer")]
    Truncated,
}

/// The SRV records of a DNS answer to query `id`.
pub fn parse_answer(id: u16, msg: &[u8]) -> Result<Vec<Srv>, Answer> {
    let u16_at = |at: usize| msg.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or(Answer::Misbehaving);
    if msg.len() < 12 || u16_at(0)? != id || msg[2] & 0x80 == 0 {
        return Err(Answer::Misbehaving);
    }
    if msg[2] & 0x02 != 0 {
        return Err(Answer::Truncated);
    }
    match msg[3] & 0x0f {
        0 => {}
        3 => return Err(Answer::NoSuchHost),
        _ => return Err(Answer::Misbehaving),
    }
    let (questions, answers) = (u16_at(4)?, u16_at(6)?);
    let mut at = 12;
    for _ in 0..questions {
        at = read_name(msg, at, &mut String::new())? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..answers {
        at = read_name(msg, at, &mut String::new())?;
        let (rtype, rdlen) = (u16_at(at)?, u16_at(at + 8)? as usize);
        let rdata = at + 10;
        if msg.len() < rdata + rdlen {
            return Err(Answer::Misbehaving);
        }
        if rtype == TYPE_SRV {
            let mut target = String::new();
            read_name(msg, rdata + 6, &mut target)?;
            out.push(Srv { priority: u16_at(rdata)?, weight: u16_at(rdata + 2)?, port: u16_at(rdata + 4)?, target });
        }
        at = rdata + rdlen;
    }
    if out.is_empty() {
        return Err(Answer::NoSuchHost);
    }
    Ok(out)
}

/// Reads a (possibly compressed) name at `at` into `out` with a trailing dot; returns where the
/// name ends in the message. A compression pointer must point before the labels read since the
/// last one, so a name is read in finitely many steps.
fn read_name(msg: &[u8], mut at: usize, out: &mut String) -> Result<usize, Answer> {
    let mut end = None;
    let mut run_start = at;
    loop {
        let len = *msg.get(at).ok_or(Answer::Misbehaving)? as usize;
        match len {
            0 => {
                if out.is_empty() {
                    out.push('.');
                }
                return Ok(end.unwrap_or(at + 1));
            }
            l if l & 0xc0 == 0xc0 => {
                let target = ((l & 0x3f) << 8) | *msg.get(at + 1).ok_or(Answer::Misbehaving)? as usize;
                if target >= run_start {
                    return Err(Answer::Misbehaving);
                }
                end.get_or_insert(at + 2);
                (at, run_start) = (target, target);
            }
            l if l < 64 => {
                let label = msg.get(at + 1..at + 1 + l).ok_or(Answer::Misbehaving)?;
                out.push_str(&String::from_utf8_lossy(label));
                out.push('.');
                at += 1 + l;
            }
            _ => return Err(Answer::Misbehaving),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer to `encode_query(7, "_etcd-server._tcp.example.com.")` with two records, the
    /// second target compressed against the first.
    fn answer() -> Vec<u8> {
        let mut m = encode_query(7, "_etcd-server._tcp.example.com.").expect("query");
        m[2] = 0x81;
        m[3] = 0x80;
        m[7] = 2;
        for (prio, port, target) in
            [(10u16, 2380u16, &b"\x02m1\x07example\x03com\x00"[..]), (0, 2381, &b"\x02m2\xc0\x1e"[..])]
        {
            m.extend_from_slice(&[0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 60]);
            m.extend_from_slice(&((6 + target.len()) as u16).to_be_bytes());
            m.extend_from_slice(&prio.to_be_bytes());
            m.extend_from_slice(&5u16.to_be_bytes());
            m.extend_from_slice(&port.to_be_bytes());
            m.extend_from_slice(target);
        }
        m
    }

    #[test]
    fn parses_srv_records_with_compressed_names() {
        let m = answer();
        let got = parse_answer(7, &m).expect("records");
        assert_eq!(got[0], Srv { target: "m1.example.com.".into(), port: 2380, priority: 10, weight: 5 });
        // 0x1e is where the question's "example.com" starts.
        assert_eq!(got[1].target, "m2.example.com.");
        assert_eq!(parse_answer(8, &m), Err(Answer::Misbehaving), "another query's answer");
    }

    #[test]
    fn every_truncation_and_byte_flip_of_an_answer_is_an_error_or_records_never_a_panic() {
        let m = answer();
        for n in 0..m.len() {
            let _ = parse_answer(7, &m[..n]);
        }
        for i in 0..m.len() {
            for bit in 0..8 {
                let mut f = m.clone();
                f[i] ^= 1 << bit;
                let _ = parse_answer(7, &f);
            }
        }
    }

    #[test]
    fn service_names_as_etcd() {
        assert_eq!(service_name("etcd-server", "", "https"), "etcd-server-ssl");
        assert_eq!(service_name("etcd-client", "prod", "http"), "etcd-client-prod");
        assert_eq!(service_name("etcd-client", "prod", "https"), "etcd-client-ssl-prod");
    }
}
