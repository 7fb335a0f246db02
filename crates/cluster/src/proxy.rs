//! A fault-injecting TCP proxy for a member's peer URL: every connection into the member goes
//! through it, so the test can blackhole (data silently dropped) or delay what the member
//! receives from its peers, and heal it again.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
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

/// A proxy listening on `port` and forwarding to `127.0.0.1:target`.
pub struct Proxy {
    pub port: u16,
    fault: Arc<Mutex<Fault>>,
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
        let fault = Arc::new(Mutex::new(Fault::Healthy));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (fault.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((inbound, _)) => {
                        let _ = inbound.set_nonblocking(false);
                        if let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)) {
                            pump(inbound, outbound, f.clone(), s.clone());
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(Proxy { port, fault, stop })
    }

    pub fn set(&self, f: Fault) {
        *self.fault.lock().unwrap_or_else(|p| p.into_inner()) = f;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Copies both directions of a connection; the fault applies to both.
fn pump(a: TcpStream, b: TcpStream, fault: Arc<Mutex<Fault>>, stop: Arc<AtomicBool>) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else { return };
    for (mut from, mut to) in [(a, b), (b2, a2)] {
        let (fault, stop) = (fault.clone(), stop.clone());
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
                let f = *fault.lock().unwrap_or_else(|p| p.into_inner());
                match f {
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
