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
use std::net::{IpAddr, SocketAddr};
use std::os::fd::FromRawFd;

use mio::net::TcpStream;

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
    let source = u32::from_be_bytes([127, 0, 0, 2]) + index % SOURCES;
    // SAFETY: plain socket calls on a descriptor this function owns until it is handed to
    // `TcpStream` (or closed on error); every pointer is to a local that outlives its call.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fail = |fd| {
            let e = io::Error::last_os_error();
            libc::close(fd);
            Err(e)
        };
        let one: libc::c_int = 1;
        if libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) != 0
        {
            return fail(fd);
        }
        let sin = |addr: u32, port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: addr.to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let local = sin(source, 0);
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0 {
            return fail(fd);
        }
        let remote = sin(u32::from(ip), target.port());
        if libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0
            && io::Error::last_os_error().raw_os_error() != Some(libc::EINPROGRESS)
        {
            return fail(fd);
        }
        Ok(TcpStream::from_std(std::net::TcpStream::from_raw_fd(fd)))
    }
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
