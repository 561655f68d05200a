//! Non-blocking connects spread over loopback source addresses.
//!
//! Thousands of clients reconnecting to one `127.0.0.1:port` at once make the kernel's
//! ephemeral-port search the load generator's biggest cost: every candidate port already
//! used towards that address (15,000 live sockets plus 15,000 in TIME_WAIT after a storm's
//! cut) needs a 4-tuple check. Profiled on the load CPU during a 15,000-client reconnect
//! storm, `__inet_hash_connect` and `__inet_check_established` were 38% of it, time the
//! generator's clients and its `/healthz` probe then waited for. Binding each socket to one
//! of [`SOURCES`] loopback addresses first (with `IP_BIND_ADDRESS_NO_PORT`, so the port is
//! still chosen at connect time against the whole 4-tuple) makes almost every first
//! candidate free. Only for loopback targets: the whole 127.0.0.0/8 is local.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;

use mio::net::TcpStream;
use socket2::{Domain, Socket, Type};

/// Loopback source addresses used (127.0.0.2 ..= 127.0.0.(1 + SOURCES)): 64 keep every one
/// under 300 sockets at 15,000 clients.
pub const SOURCES: u32 = 64;

/// Starts a non-blocking connect to `target`; loopback targets get source address
/// `127.0.0.(2 + index % SOURCES)`.
pub fn connect(target: SocketAddr, index: u32) -> io::Result<TcpStream> {
    let IpAddr::V4(ip) = target.ip() else {
        return TcpStream::connect(target);
    };
    if !ip.is_loopback() {
        return TcpStream::connect(target);
    }
    let source = Ipv4Addr::from(u32::from_be_bytes([127, 0, 0, 2]) + index % SOURCES);
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a descriptor `socket` owns, reading a live c_int of the given size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    socket.bind(&SocketAddr::from((source, 0)).into())?;
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn loopback_connects_come_from_the_spread_source_addresses() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = l.local_addr().unwrap();
        for i in [0, 1, SOURCES + 1] {
            let _s = connect(target, i).unwrap();
            let (_, peer) = l.accept().unwrap();
            let want = std::net::Ipv4Addr::from(u32::from_be_bytes([127, 0, 0, 2]) + i % SOURCES);
            assert_eq!(peer.ip(), IpAddr::V4(want));
        }
    }
}
