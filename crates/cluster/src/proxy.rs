//! A fault-injecting TCP proxy for a member's peer URL: every connection into the member goes
//! through it, so the test can blackhole (data silently dropped) or delay what the member
//! exchanges with its peers, and heal it again.
//!
//! etcd's peer protocol carries messages both ways on connections either member dialled, so a
//! member's fault covers its links both ways: the connections into it (through its proxy) and
//! the ones it dialled into its peers (through theirs), which a proxy recognises by the
//! dialler's advertised peer URL (its proxy's) in the first request's `X-PeerURLs` header.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does to the bytes it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything at once.
    Healthy,
    /// Read and drop everything: the member hears nothing, its peers see no error.
    Blackhole,
    /// Forward each chunk after this delay.
    Delay(Duration),
}

/// Every proxy's fault in this process, by its port (a member's advertised peer port).
static FAULTS: Mutex<Vec<(u16, Fault)>> = Mutex::new(Vec::new());

fn fault_of(port: u16) -> Fault {
    let faults = FAULTS.lock().unwrap_or_else(|p| p.into_inner());
    faults.iter().find(|(p, _)| *p == port).map_or(Fault::Healthy, |(_, f)| *f)
}

/// The harsher of two faults.
fn worst(a: Fault, b: Fault) -> Fault {
    match (a, b) {
        (Fault::Blackhole, _) | (_, Fault::Blackhole) => Fault::Blackhole,
        (Fault::Delay(x), Fault::Delay(y)) => Fault::Delay(x.max(y)),
        (Fault::Delay(d), _) | (_, Fault::Delay(d)) => Fault::Delay(d),
        _ => Fault::Healthy,
    }
}

/// The port of the dialler's advertised peer URL in a request's `X-PeerURLs` header.
fn dialler_port(head: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let value = text.split("x-peerurls:").nth(1)?.lines().next()?.trim().split(',').next()?.to_string();
    value.rsplit(':').next()?.trim_end_matches('/').parse().ok()
}

/// A proxy listening on `port` and forwarding to `127.0.0.1:target`.
pub struct Proxy {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Starts the proxy; panics when `port` cannot be bound (tests pick free ports).
    pub fn start(port: u16, target: u16) -> Proxy {
        Proxy::try_start(port, target).unwrap_or_else(|e| panic!("proxy on port {port}: {e}"))
    }

    pub fn try_start(port: u16, target: u16) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((inbound, _)) => {
                        let _ = inbound.set_nonblocking(false);
                        if let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)) {
                            pump(inbound, outbound, port, s.clone());
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(Proxy { port, stop })
    }

    /// The fault of this member's links, both ways.
    pub fn set(&self, f: Fault) {
        let mut faults = FAULTS.lock().unwrap_or_else(|p| p.into_inner());
        faults.retain(|(p, _)| *p != self.port);
        faults.push((self.port, f));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        FAULTS.lock().unwrap_or_else(|p| p.into_inner()).retain(|(p, _)| *p != self.port);
    }
}

/// Copies both directions of a connection into the member behind proxy `port`; the worse of
/// that member's fault and the dialling member's applies to both.
fn pump(a: TcpStream, b: TcpStream, port: u16, stop: Arc<AtomicBool>) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else { return };
    // The dialler's proxy port, once its first request has said (0 until then).
    let dialler = Arc::new(AtomicU16::new(0));
    for (inbound, (mut from, mut to)) in [(true, (a, b)), (false, (b2, a2))] {
        let (dialler, stop) = (dialler.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if inbound
                    && dialler.load(Ordering::Relaxed) == 0
                    && let Some(p) = dialler_port(&buf[..n])
                {
                    dialler.store(p, Ordering::Relaxed);
                }
                let from_dialler = match dialler.load(Ordering::Relaxed) {
                    0 => Fault::Healthy,
                    p => fault_of(p),
                };
                match worst(fault_of(port), from_dialler) {
                    Fault::Blackhole => continue,
                    Fault::Delay(d) => std::thread::sleep(d),
                    Fault::Healthy => {}
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dialler_is_read_from_its_first_request() {
        let head = b"GET /raft/stream/message/1 HTTP/1.1\r\nhost: x\r\nx-peerurls: http://127.0.0.1:4321\r\n\r\n";
        assert_eq!(dialler_port(head), Some(4321));
        let go = b"POST /raft HTTP/1.1\r\nX-Peerurls: http://127.0.0.1:99,http://127.0.0.1:98\r\n\r\n";
        assert_eq!(dialler_port(go), Some(99));
        assert_eq!(dialler_port(b"PRI * HTTP/2.0\r\n"), None);
        assert_eq!(worst(Fault::Delay(Duration::from_millis(5)), Fault::Blackhole), Fault::Blackhole);
        assert_eq!(
            worst(Fault::Healthy, Fault::Delay(Duration::from_millis(5))),
            Fault::Delay(Duration::from_millis(5))
        );
    }
}
