//! Per-shard listening sockets. Every shard binds its own SO_REUSEPORT socket to the same
//! address, so the kernel spreads new connections over shards with no shared accept queue.

use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// Binds a non-blocking, SO_REUSEPORT listener and returns its fd and the bound address (so a
/// first shard can bind port 0 and the others the port it got).
pub fn bind_reuseport(addr: SocketAddr, backlog: i32) -> std::io::Result<(RawFd, SocketAddr)> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(backlog)?;
    let local = sock
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("listener has no inet address"))?;
    Ok((sock.into_raw_fd(), local))
}

/// Fails with `AddrInUse` when something already listens on `addr`. SO_REUSEPORT lets any
/// process of the same user join a port's listening group, so without this check a second
/// corecast started by mistake would silently take half of the first one's new connections
/// (publishers on one broker, subscribers on the other). The probe binds without
/// SO_REUSEPORT, which a live listener refuses; port 0 needs no probe.
pub fn ensure_unused(addr: SocketAddr) -> std::io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // SO_REUSEADDR alone still lets the probe bind over TIME_WAIT leftovers of a stopped
    // broker, but not over a listener.
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "address already in use (another process listens on it)",
            )
        } else {
            e
        }
    })
}

/// Sets TCP_NODELAY on an accepted socket: frames are already coalesced by the send path, so
/// Nagle would only add latency.
pub fn set_nodelay(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: the option value pointer and length describe `one`, a live c_int the kernel only
    // reads; on a bad fd the call just fails.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Turns on TCP keepalive for an accepted socket: after `idle_s` seconds of silence the
/// kernel probes the peer every `idle_s / 3` seconds and, after three unanswered probes,
/// fails the connection, so a client that vanished without a FIN (a cut cable, a crashed
/// host) does not hold a connection and its subscriptions for ever. Redis does the same
/// (`tcp-keepalive 300`). Options a kernel lacks are skipped.
pub fn set_keepalive(fd: RawFd, idle_s: u32) {
    let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| {
        // SAFETY: the option value pointer and length describe `value`, a live c_int the
        // kernel only reads; on a bad fd or an unknown option the call just fails.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    };
    let idle = idle_s.clamp(1, i32::MAX as u32) as libc::c_int;
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, idle);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, (idle / 3).max(1));
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3);
}

/// Shuts a socket down in both directions (`shutdown(2)`, `SHUT_RDWR`) without closing it.
///
/// This is how a connection's in-flight io_uring ops are made to finish: a multishot receive
/// sees EOF, a blocked send fails, and a listening socket leaves the listening state (which
/// ends a multishot accept and resets connections still in the backlog) even though the ring
/// holds a reference to the file. Called directly rather than through IORING_OP_SHUTDOWN, which
/// resolves the fd number only later in a worker, when it may already name another socket.
/// Never blocks. The caller must own `fd`.
pub fn shutdown_socket(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: shutdown(2) takes no pointer; on an fd that is not a socket it only fails.
    if unsafe { libc::shutdown(fd, libc::SHUT_RDWR) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Closes an fd synchronously (`close(2)`), for fds that no ring op refers to, such as a
/// connection accepted after the shard began to stop. The caller must own `fd` and not use
/// the number again. Errors are ignored: the descriptor is released either way.
pub fn close_fd(fd: RawFd) {
    // SAFETY: close(2) takes no pointer; the caller owns `fd` (documented contract), so no
    // other owner sees its number reused.
    unsafe { libc::close(fd) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_broker_cannot_join_a_live_listener() {
        let (fd, addr) = bind_reuseport("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let err = ensure_unused(addr).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        close_fd(fd);
        ensure_unused(addr).unwrap();
        ensure_unused("127.0.0.1:0".parse().unwrap()).unwrap();
    }

    #[test]
    fn shutdown_socket_ends_the_peers_stream_and_refuses_non_sockets() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        shutdown_socket(a.as_raw_fd()).unwrap();
        let mut rest = Vec::new();
        assert_eq!(b.read_to_end(&mut rest).unwrap(), 0, "the peer sees EOF");
        let file = std::fs::File::open("/dev/null").unwrap();
        let err = shutdown_socket(file.as_raw_fd()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTSOCK));
    }
}
