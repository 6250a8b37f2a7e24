//! Thin, audited wrappers over the socket and fd syscalls the reactors need (libc ABI).
//!
//! Owns: socket creation (SO_REUSEPORT groups, IP_PKTINFO, CPU steering with SO_INCOMING_CPU or
//! the two-instruction classic BPF program), sockaddr conversions, IP_PKTINFO /
//! IPV6_PKTINFO control messages, eventfds. Every `unsafe` here is a libc call whose pointer
//! arguments point at live, correctly sized locals; the SAFETY notes say which.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Room for one IPv4 or IPv6 pktinfo control message.
pub(crate) const CMSG_SPACE: usize = 64;
/// `sizeof(sockaddr_in6)`: the name length that fits both families.
pub(crate) const NAME_LEN: u32 = size_of::<libc::sockaddr_in6>() as u32;

pub(crate) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live reference of exactly `size_of::<T>()` bytes.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    cvt(r).map(drop)
}

fn socket(domain: libc::c_int, ty: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd =
        cvt(unsafe { libc::socket(domain, ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn domain(addr: &SocketAddr) -> libc::c_int {
    if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    }
}

fn bind(fd: RawFd, addr: &SocketAddr) -> io::Result<()> {
    let (storage, len) = to_sockaddr(addr);
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes.
    cvt(unsafe { libc::bind(fd, (&raw const storage).cast(), len) }).map(drop)
}

/// A UDP socket in a SO_REUSEPORT group, reporting the local address of each datagram.
pub(crate) fn udp_socket(addr: &SocketAddr) -> io::Result<OwnedFd> {
    let fd = socket(domain(addr), libc::SOCK_DGRAM)?;
    let raw = fd.as_raw_fd();
    let one: libc::c_int = 1;
    setsockopt(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, &one)?;
    setsockopt(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, &one)?;
    if addr.is_ipv4() {
        setsockopt(raw, libc::IPPROTO_IP, libc::IP_PKTINFO, &one)?;
    } else {
        setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, &one)?;
        setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, &one)?;
    }
    bind(raw, addr)?;
    Ok(fd)
}

/// A TCP listener in a SO_REUSEPORT group.
pub(crate) fn tcp_listener(addr: &SocketAddr, backlog: i32) -> io::Result<OwnedFd> {
    let fd = socket(domain(addr), libc::SOCK_STREAM)?;
    let raw = fd.as_raw_fd();
    let one: libc::c_int = 1;
    setsockopt(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, &one)?;
    setsockopt(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, &one)?;
    if addr.is_ipv6() {
        setsockopt(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, &one)?;
    }
    bind(raw, addr)?;
    // SAFETY: plain syscall on an fd we own.
    cvt(unsafe { libc::listen(raw, backlog) })?;
    Ok(fd)
}

/// A non-blocking TCP socket for an outbound connection (connect is issued by the backend).
pub(crate) fn tcp_socket(peer: &SocketAddr) -> io::Result<OwnedFd> {
    let fd = socket(domain(peer), libc::SOCK_STREAM)?;
    set_nodelay(fd.as_raw_fd());
    Ok(fd)
}

/// Disable Nagle (SIP and SMPP are request/response).
pub(crate) fn set_nodelay(fd: RawFd) {
    let one: libc::c_int = 1;
    let _ = setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, &one);
}

/// Steer the reuseport group by the CPU that received the packet: `SO_INCOMING_CPU` on this
/// socket (the kernel prefers the group member whose incoming CPU matches).
pub(crate) fn set_incoming_cpu(fd: RawFd, cpu: usize) -> io::Result<()> {
    let v = cpu as libc::c_int;
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_INCOMING_CPU, &v)
}

/// Attach the classic BPF program `A = cpu; return A` to a reuseport group: the index of the
/// socket chosen is the receiving CPU (out-of-range values fall back to the hash).
pub(crate) fn attach_cpu_cbpf(fd: RawFd) -> io::Result<()> {
    const SKF_AD_OFF: i32 = -0x1000;
    const SKF_AD_CPU: i32 = 36;
    let mut code = [
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: (SKF_AD_OFF + SKF_AD_CPU) as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_A) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    let prog = libc::sock_fprog {
        len: code.len() as u16,
        filter: code.as_mut_ptr(),
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_REUSEPORT_CBPF, &prog)
}

/// Attach a classic BPF program to the reuseport group of `fd`: its return value is the index
/// of the group's socket that gets the datagram (out of range: the kernel's hash).
pub(crate) fn attach_reuseport_cbpf(fd: RawFd, prog: &[crate::BpfInsn]) -> io::Result<()> {
    let mut code: Vec<libc::sock_filter> = prog
        .iter()
        .map(|&(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k })
        .collect();
    let len =
        u16::try_from(code.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let fprog = libc::sock_fprog {
        len,
        filter: code.as_mut_ptr(),
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_REUSEPORT_CBPF, &fprog)
}

/// Convert a std address into a sockaddr_storage and its length.
pub(crate) fn to_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            unsafe { (&raw mut storage).cast::<libc::sockaddr_in>().write(sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            unsafe { (&raw mut storage).cast::<libc::sockaddr_in6>().write(sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Parse a sockaddr held in raw bytes (as the kernel wrote it into a receive buffer).
pub(crate) fn from_sockaddr_bytes(b: &[u8]) -> Option<SocketAddr> {
    if b.len() < 2 {
        return None;
    }
    let family = u16::from_ne_bytes([b[0], b[1]]) as libc::c_int;
    match family {
        libc::AF_INET if b.len() >= size_of::<libc::sockaddr_in>() => {
            let port = u16::from_be_bytes([b[2], b[3]]);
            let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        libc::AF_INET6 if b.len() >= size_of::<libc::sockaddr_in6>() => {
            let port = u16::from_be_bytes([b[2], b[3]]);
            let flow = u32::from_ne_bytes([b[4], b[5], b[6], b[7]]);
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[8..24]);
            let scope = u32::from_ne_bytes([b[24], b[25], b[26], b[27]]);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(o),
                port,
                flow,
                scope,
            )))
        }
        _ => None,
    }
}

/// View a sockaddr_storage of `len` bytes as raw bytes.
pub(crate) fn storage_bytes(s: &libc::sockaddr_storage, len: usize) -> &[u8] {
    let len = len.min(size_of::<libc::sockaddr_storage>());
    // SAFETY: `s` is a live sockaddr_storage and `len` is clamped to its size.
    unsafe { std::slice::from_raw_parts((s as *const libc::sockaddr_storage).cast::<u8>(), len) }
}

fn name_of(
    fd: RawFd,
    f: unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int,
) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
    let mut s: libc::sockaddr_storage = unsafe { zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `s`/`len` are live and `len` is the size of `s`.
    cvt(unsafe { f(fd, (&raw mut s).cast(), &mut len) })?;
    from_sockaddr_bytes(storage_bytes(&s, len as usize))
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
}

/// `getsockname(2)`.
pub(crate) fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    name_of(fd, libc::getsockname)
}

/// `getpeername(2)`.
pub(crate) fn peer_addr(fd: RawFd) -> io::Result<SocketAddr> {
    name_of(fd, libc::getpeername)
}

/// `SO_ERROR` of a socket (result of a non-blocking connect).
pub(crate) fn take_error(fd: RawFd) -> io::Result<()> {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v`/`len` are live locals of the advertised size.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&raw mut v).cast(),
            &mut len,
        )
    })?;
    if v == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(v))
    }
}

/// The destination address of a received datagram, from its IP_PKTINFO / IPV6_PKTINFO cmsg.
pub(crate) fn parse_pktinfo(control: &[u8]) -> Option<IpAddr> {
    let hdr = size_of::<libc::cmsghdr>();
    let mut off = 0usize;
    while off + hdr <= control.len() {
        // SAFETY: `off + hdr <= len`; read_unaligned copes with the byte buffer's alignment.
        let c: libc::cmsghdr =
            unsafe { std::ptr::read_unaligned(control.as_ptr().add(off).cast::<libc::cmsghdr>()) };
        let clen = c.cmsg_len as usize;
        if clen < hdr || off + clen > control.len() {
            return None;
        }
        let data = &control[off + hdr..off + clen];
        if c.cmsg_level == libc::IPPROTO_IP
            && c.cmsg_type == libc::IP_PKTINFO
            && data.len() >= size_of::<libc::in_pktinfo>()
        {
            // ipi_ifindex (4), ipi_spec_dst (4), ipi_addr (4): the header destination address.
            return Some(IpAddr::V4(Ipv4Addr::new(
                data[8], data[9], data[10], data[11],
            )));
        }
        if c.cmsg_level == libc::IPPROTO_IPV6
            && c.cmsg_type == libc::IPV6_PKTINFO
            && data.len() >= size_of::<libc::in6_pktinfo>()
        {
            let mut o = [0u8; 16];
            o.copy_from_slice(&data[..16]);
            return Some(IpAddr::V6(Ipv6Addr::from(o)));
        }
        off += (clen + size_of::<usize>() - 1) & !(size_of::<usize>() - 1);
    }
    None
}

/// Write a pktinfo cmsg selecting `local` as the source address; returns its length
/// (0 when the family does not match the socket's).
pub(crate) fn write_pktinfo(buf: &mut [u8; CMSG_SPACE], local: IpAddr, v6_socket: bool) -> usize {
    buf.fill(0);
    let hdr = size_of::<libc::cmsghdr>();
    let (level, ty, data): (libc::c_int, libc::c_int, Vec<u8>) = match (local, v6_socket) {
        (IpAddr::V4(a), false) => {
            let mut d = vec![0u8; size_of::<libc::in_pktinfo>()];
            d[4..8].copy_from_slice(&a.octets()); // ipi_spec_dst
            (libc::IPPROTO_IP, libc::IP_PKTINFO, d)
        }
        (IpAddr::V6(a), true) => {
            let mut d = vec![0u8; size_of::<libc::in6_pktinfo>()];
            d[..16].copy_from_slice(&a.octets());
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, d)
        }
        _ => return 0,
    };
    let len = hdr + data.len();
    let space = (len + size_of::<usize>() - 1) & !(size_of::<usize>() - 1);
    if space > CMSG_SPACE {
        return 0;
    }
    let c = libc::cmsghdr {
        cmsg_len: len as _,
        cmsg_level: level,
        cmsg_type: ty,
    };
    // SAFETY: `hdr <= CMSG_SPACE`; write_unaligned copes with the byte buffer's alignment.
    unsafe { std::ptr::write_unaligned(buf.as_mut_ptr().cast::<libc::cmsghdr>(), c) };
    buf[hdr..len].copy_from_slice(&data);
    space
}

/// A non-blocking, close-on-exec eventfd.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
    // SAFETY: `fd` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Signal an eventfd (never blocks: a saturated counter is already signalled).
pub(crate) fn eventfd_write(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64.
    let _ = unsafe { libc::write(fd, (&raw const one).cast(), 8) };
}

/// Clear an eventfd.
pub(crate) fn eventfd_read(fd: RawFd) {
    let mut v: u64 = 0;
    // SAFETY: reads 8 bytes into a live u64.
    let _ = unsafe { libc::read(fd, (&raw mut v).cast(), 8) };
}

/// Block until the eventfd is readable or `timeout` passes, then clear it.
pub(crate) fn eventfd_wait(fd: RawFd, timeout: Option<Duration>) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32);
    // SAFETY: one live pollfd.
    let _ = unsafe { libc::poll(&mut p, 1, ms) };
    eventfd_read(fd);
}

/// The kernel thread id of the caller (for `/proc/self/task/<tid>/schedstat` in benchmarks).
pub fn gettid() -> i32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::gettid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_roundtrip() {
        for a in ["127.0.0.1:5060", "[::1]:5061", "[fe80::1%2]:7"] {
            let a: SocketAddr = a.parse().expect("addr");
            let (s, len) = to_sockaddr(&a);
            assert_eq!(
                from_sockaddr_bytes(storage_bytes(&s, len as usize)),
                Some(a)
            );
        }
    }

    #[test]
    fn pktinfo_roundtrip_v6() {
        let mut buf = [0u8; CMSG_SPACE];
        let ip: IpAddr = "::1".parse().expect("ip");
        let n = write_pktinfo(&mut buf, ip, true);
        assert!(n > 0);
        assert_eq!(parse_pktinfo(&buf[..n]), Some(ip));
        assert_eq!(write_pktinfo(&mut buf, ip, false), 0);
    }
}
