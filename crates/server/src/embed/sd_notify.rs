//! systemd's readiness protocol: under a `Type=notify` unit, systemd waits for `READY=1` on the
//! datagram socket `$NOTIFY_SOCKET` names (a path, or an abstract name after `@`). etcd sends
//! it once the member has joined its cluster (published itself through raft) and serves
//! clients, with the same log lines; without `$NOTIFY_SOCKET` nothing is sent.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;

/// Tells the init system the member is ready, when one asked to be told.
pub fn ready() {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    tracing::info!("notifying init daemon");
    match send(&socket, b"READY=1") {
        Ok(()) => tracing::info!("successfully notified init daemon"),
        Err(e) => tracing::error!(error = %e, "failed to notify systemd for readiness"),
    }
}

fn send(socket: &OsStr, message: &[u8]) -> std::io::Result<()> {
    let out = UnixDatagram::unbound()?;
    match socket.as_bytes().strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            out.send_to_addr(message, &addr)?;
        }
        None => {
            out.send_to(message, socket)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_reaches_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind");
        send(path.as_os_str(), b"READY=1").expect("send");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("rustcd-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let abstract_listener = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        send(OsStr::new(&format!("@{name}")), b"READY=1").expect("send abstract");
        let n = abstract_listener.recv(&mut buf).expect("recv abstract");
        assert_eq!(&buf[..n], b"READY=1");
        assert!(send(OsStr::new("/nonexistent/notify"), b"READY=1").is_err());
    }
}
