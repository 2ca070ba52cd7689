//! The systemd notify protocol (sd_notify(3)): one datagram such as `READY=1` to the socket that
//! systemd names in `NOTIFY_SOCKET` for a `Type=notify` service; without one nothing is sent.

use std::ffi::OsStr;
use std::path::Path;

/// Tells systemd `msg` (`READY=1`, `STOPPING=1`) if it started this process as a `Type=notify`
/// service.
pub fn notify(msg: &str) {
    notify_to(std::env::var_os("NOTIFY_SOCKET").as_deref(), msg);
}

/// Sends `msg` to `socket` (a path, or `@name` for an abstract socket). Failures are logged at
/// debug level only: a service must not fail because nobody listens.
pub fn notify_to(socket: Option<&OsStr>, msg: &str) {
    let Some(path) = socket else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let r = if let Some(name) = path.as_encoded_bytes().strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| sock.send_to_addr(msg.as_bytes(), &addr))
    } else {
        sock.send_to(msg.as_bytes(), Path::new(path))
    };
    if let Err(e) = r {
        tracing::debug!("sd_notify {msg}: {e}");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn sends_to_a_path_socket() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("notify");
        let rx = std::os::unix::net::UnixDatagram::bind(&p).unwrap();
        super::notify_to(Some(p.as_os_str()), "READY=1");
        let mut buf = [0u8; 16];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        super::notify_to(None, "READY=1"); // no socket: nothing happens
    }
}
