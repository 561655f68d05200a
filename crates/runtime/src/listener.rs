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

/// Sets TCP_NODELAY on an accepted socket: frames are already coalesced by the send path, so
/// Nagle would only add latency.
pub fn set_nodelay(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: valid fd and option pointer/length.
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
