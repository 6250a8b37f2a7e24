//! The epoll fallback backend (hosts where io_uring is blocked: Docker's default seccomp
//! profile, `kernel.io_uring_disabled`, old kernels).
//!
//! Owns: one epoll set per reactor holding the doorbell eventfd, the UDP sockets, the TCP
//! listeners and the connections (all level-triggered). UDP receives with `recvmmsg` in batches
//! into a fixed buffer array (each slot takes the largest datagram: slab.rs) and sends with
//! `sendmmsg` batched per turn (feasibility §2: as cheap per datagram as io_uring on this
//! kernel). Streams read with `readv` and write with
//! `writev`; a connection's queue is bounded by `write_queue_limit`. Nothing is in flight in the
//! kernel between turns, so closing a connection frees its buffers at once.

use std::collections::VecDeque;
use std::io;
use std::mem::zeroed;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::config::Config;
use crate::cx::{Command, Sink};
use crate::mesh::Bell;
use crate::metrics::add;
use crate::runtime::{Backend, CoreSockets, take_commands};
use crate::slab::Slab;
use crate::sys::{self, CMSG_SPACE};
use crate::{CloseReason, ConnId, Datagram, UdpSocketId};

const T_BELL: u64 = 0;
const T_UDP: u64 = 1;
const T_LISTEN: u64 = 2;
const T_CONN: u64 = 3;
const BATCH: usize = 64;
const MAX_IOV: usize = 64;

fn token(kind: u64, idx: u32) -> u64 {
    (kind << 56) | idx as u64
}

struct UdpSock {
    fd: OwnedFd,
    v6: bool,
    wildcard: bool,
}

struct EConn {
    id: ConnId,
    fd: OwnedFd,
    peer: SocketAddr,
    queue: VecDeque<Vec<u8>>,
    offset: usize,
    queued: usize,
    connecting: bool,
    out_registered: bool,
    /// Graceful close requested: close when the queue is empty.
    close_after_flush: Option<CloseReason>,
}

/// Receive batch memory, allocated once; pointers are refreshed before each `recvmmsg`. Each
/// slot offers the largest datagram and keeps `udp_buffer_size` bytes in memory ([`Slab`]).
struct RecvBatch {
    bufs: Slab,
    names: Vec<libc::sockaddr_storage>,
    ctrls: Vec<[u8; CMSG_SPACE]>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

struct PendingSend {
    peer: SocketAddr,
    local: Option<IpAddr>,
    buf: Vec<u8>,
}

pub(crate) struct EpollBackend {
    epfd: OwnedFd,
    bell_fd: RawFd,
    bell_drain: std::sync::Arc<Bell>,
    udp: Vec<UdpSock>,
    listeners: Vec<OwnedFd>,
    conns: Vec<Option<EConn>>,
    recv: RecvBatch,
    sends: Vec<Vec<PendingSend>>,
    dirty: Vec<u32>,
    events: Vec<libc::epoll_event>,
    cmds: Vec<Command>,
    read_buf: Vec<u8>,
    write_limit: usize,
}

// SAFETY: the raw pointers inside (the receive slab's pages, iovec/mmsghdr scratch) point into
// memory this backend owns and frees, and the epoll fd and sockets may be used from any
// thread; the core's standby thread only uses it while holding the core's mutex (handover.rs).
unsafe impl Send for EpollBackend {}

fn ctl(epfd: RawFd, op: libc::c_int, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: `ev` is a live epoll_event; the fds are owned by the backend.
    sys::cvt(unsafe { libc::epoll_ctl(epfd, op, fd, &mut ev) }).map(drop)
}

impl EpollBackend {
    pub(crate) fn new(
        config: &Config,
        socks: CoreSockets,
        bell: &std::sync::Arc<Bell>,
    ) -> io::Result<Self> {
        // SAFETY: plain syscall.
        let epfd = sys::cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: just created, owned by nobody else.
        let epfd = unsafe { OwnedFd::from_raw_fd(epfd) };
        let bell_fd = bell
            .fd()
            .ok_or_else(|| io::Error::other("reactor bell must be an eventfd"))?;
        ctl(
            epfd.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            bell_fd,
            libc::EPOLLIN as u32,
            token(T_BELL, 0),
        )?;
        let mut udp = Vec::new();
        for (i, (fd, addr)) in socks.udp.into_iter().enumerate() {
            ctl(
                epfd.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                libc::EPOLLIN as u32,
                token(T_UDP, i as u32),
            )?;
            udp.push(UdpSock {
                fd,
                v6: addr.is_ipv6(),
                wildcard: addr.ip().is_unspecified(),
            });
        }
        let mut listeners = Vec::new();
        for (i, (fd, _)) in socks.tcp.into_iter().enumerate() {
            ctl(
                epfd.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                libc::EPOLLIN as u32,
                token(T_LISTEN, i as u32),
            )?;
            listeners.push(fd);
        }
        let batch = (config.udp_buffers as usize).clamp(1, BATCH);
        let bufs = Slab::new(
            batch,
            config.udp_max_datagram as usize,
            config.udp_buffer_size as usize,
        )?;
        let n_udp = udp.len();
        Ok(Self {
            epfd,
            bell_fd,
            bell_drain: bell.clone(),
            udp,
            listeners,
            conns: Vec::new(),
            recv: RecvBatch {
                bufs,
                // SAFETY: sockaddr_storage is plain old data; zero is valid.
                names: vec![unsafe { zeroed() }; batch],
                ctrls: vec![[0; CMSG_SPACE]; batch],
                iovs: vec![
                    libc::iovec {
                        iov_base: std::ptr::null_mut(),
                        iov_len: 0
                    };
                    batch
                ],
                // SAFETY: mmsghdr is plain old data; zero is valid.
                hdrs: vec![unsafe { zeroed() }; batch],
            },
            sends: (0..n_udp).map(|_| Vec::new()).collect(),
            dirty: Vec::new(),
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 256],
            cmds: Vec::new(),
            read_buf: vec![0; config.tcp_buffer_size as usize],
            write_limit: config.write_queue_limit,
        })
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut EConn> {
        self.conns
            .get_mut(id.index() as usize)?
            .as_mut()
            .filter(|c| c.id == id)
    }

    fn apply<S: Sink>(&mut self, sink: &mut S) {
        let mut cmds = std::mem::take(&mut self.cmds);
        take_commands(sink, &mut cmds);
        for c in cmds.drain(..) {
            match c {
                Command::SendUdp {
                    sock,
                    peer,
                    local,
                    buf,
                } => match self.sends.get_mut(sock as usize) {
                    Some(q) => q.push(PendingSend { peer, local, buf }),
                    None => sink.recycle(buf),
                },
                Command::Write { conn, buf } => {
                    let limit = self.write_limit;
                    let Some(c) = self
                        .conn_mut(conn)
                        .filter(|c| c.close_after_flush.is_none())
                    else {
                        sink.recycle(buf);
                        continue;
                    };
                    if c.queued + buf.len() > limit {
                        sink.recycle(buf);
                        self.drop_conn(conn, CloseReason::WriteQueueFull, sink);
                        continue;
                    }
                    c.queued += buf.len();
                    c.queue.push_back(buf);
                    if !c.connecting {
                        self.dirty.push(conn.index());
                    }
                }
                Command::Connect { conn, peer } => self.start_connect(conn, peer, sink),
                Command::Close {
                    conn,
                    reason,
                    graceful,
                } => match self.conn_mut(conn) {
                    Some(c) if graceful && !c.queue.is_empty() && !c.connecting => {
                        c.close_after_flush = Some(reason);
                        self.dirty.push(conn.index());
                    }
                    _ => self.drop_conn(conn, reason, sink),
                },
                // The batch memory is used only inside this thread's recvmmsg.
                Command::TrimReceiveBuffers => self.recv.bufs.release(),
            }
        }
        self.cmds = cmds;
    }

    fn start_connect<S: Sink>(&mut self, conn: ConnId, peer: SocketAddr, sink: &mut S) {
        let r = (|| {
            let fd = sys::tcp_socket(&peer)?;
            let (sa, len) = sys::to_sockaddr(&peer);
            // SAFETY: `sa` is a valid sockaddr of `len` bytes.
            let r = unsafe { libc::connect(fd.as_raw_fd(), (&raw const sa).cast(), len) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINPROGRESS) {
                    return Err(e);
                }
            }
            ctl(
                self.epfd.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                (libc::EPOLLOUT | libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
                token(T_CONN, conn.index()),
            )?;
            Ok(fd)
        })();
        match r {
            Ok(fd) => self.insert(EConn {
                id: conn,
                fd,
                peer,
                queue: VecDeque::new(),
                offset: 0,
                queued: 0,
                connecting: true,
                out_registered: true,
                close_after_flush: None,
            }),
            Err(e) => {
                sink.connected(conn, Err(e));
                sink.released(conn);
            }
        }
    }

    fn insert(&mut self, c: EConn) {
        let i = c.id.index() as usize;
        if self.conns.len() <= i {
            self.conns.resize_with(i + 1, || None);
        }
        self.conns[i] = Some(c);
    }

    fn drop_conn<S: Sink>(&mut self, conn: ConnId, reason: CloseReason, sink: &mut S) {
        let Some(slot) = self.conns.get_mut(conn.index() as usize) else {
            return;
        };
        if slot.as_ref().is_none_or(|c| c.id != conn) {
            return;
        }
        if let Some(c) = slot.take() {
            for b in c.queue {
                sink.recycle(b);
            }
            drop(c.fd); // closing removes it from the epoll set
            sink.closed(conn, reason);
            sink.released(conn);
        }
    }

    fn flush_udp<S: Sink>(&mut self, sink: &mut S) {
        for (si, pending) in self.sends.iter_mut().enumerate() {
            if pending.is_empty() {
                continue;
            }
            let sock = &self.udp[si];
            let mut start = 0;
            while start < pending.len() {
                let end = (start + BATCH).min(pending.len());
                let n = end - start;
                let mut addrs: [libc::sockaddr_storage; BATCH] =
                    // SAFETY: plain old data; zero is valid.
                    unsafe { zeroed() };
                let mut ctrls = [[0u8; CMSG_SPACE]; BATCH];
                let mut iovs = [libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                }; BATCH];
                // SAFETY: plain old data; zero is valid.
                let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
                for (k, p) in pending[start..end].iter_mut().enumerate() {
                    let (sa, len) = sys::to_sockaddr(&p.peer);
                    addrs[k] = sa;
                    iovs[k] = libc::iovec {
                        iov_base: p.buf.as_mut_ptr().cast(),
                        iov_len: p.buf.len(),
                    };
                    let h = &mut hdrs[k].msg_hdr;
                    h.msg_name = (&raw mut addrs[k]).cast();
                    h.msg_namelen = len;
                    h.msg_iov = &raw mut iovs[k];
                    h.msg_iovlen = 1;
                    if let Some(local) = p.local.filter(|_| sock.wildcard) {
                        let clen = sys::write_pktinfo(&mut ctrls[k], local, sock.v6);
                        if clen > 0 {
                            h.msg_control = ctrls[k].as_mut_ptr().cast();
                            h.msg_controllen = clen as _;
                        }
                    }
                }
                // SAFETY: `hdrs[..n]` point at `addrs`, `iovs`, `ctrls` and the pending buffers,
                // all alive across the call.
                let r = unsafe {
                    libc::sendmmsg(
                        sock.fd.as_raw_fd(),
                        hdrs.as_mut_ptr(),
                        n as u32,
                        libc::MSG_DONTWAIT,
                    )
                };
                if r < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    // Drop the datagram that failed (UDP: the transaction layer retransmits).
                    add(&sink.metrics().udp_tx_errors, 1);
                    start += 1;
                    continue;
                }
                add(&sink.metrics().udp_tx, r as u64);
                start += (r as usize).max(1);
                if (r as usize) < n {
                    // The first unsent one failed or would block: count it dropped and go on.
                    add(&sink.metrics().udp_tx_errors, 1);
                }
            }
            for p in pending.drain(..) {
                sink.recycle(p.buf);
            }
        }
    }

    fn flush_conn<S: Sink>(&mut self, idx: u32, sink: &mut S) {
        let epfd = self.epfd.as_raw_fd();
        let Some(Some(c)) = self.conns.get_mut(idx as usize) else {
            return;
        };
        if c.connecting {
            return;
        }
        let id = c.id;
        let mut err = None;
        while !c.queue.is_empty() {
            let mut iovs = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MAX_IOV];
            let mut n: i32 = 0;
            for (k, b) in c.queue.iter().take(MAX_IOV).enumerate() {
                let off = if k == 0 { c.offset } else { 0 };
                iovs[k] = libc::iovec {
                    iov_base: b[off..].as_ptr() as *mut _,
                    iov_len: b.len() - off,
                };
                n += 1;
            }
            // SAFETY: the iovecs point into buffers owned by `c.queue`, alive across the call.
            let r = unsafe { libc::writev(c.fd.as_raw_fd(), iovs.as_ptr(), n) };
            if r < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => break,
                    k => {
                        err = Some(k);
                        break;
                    }
                }
            }
            let mut left = r as usize;
            add(&sink.metrics().tcp_tx_bytes, left as u64);
            c.queued -= left;
            while left > 0 {
                let front_len = c.queue.front().map_or(0, |b| b.len()) - c.offset;
                if left >= front_len {
                    left -= front_len;
                    c.offset = 0;
                    if let Some(b) = c.queue.pop_front() {
                        sink.recycle(b);
                    }
                } else {
                    c.offset += left;
                    left = 0;
                }
            }
        }
        if let Some(k) = err {
            self.drop_conn(id, CloseReason::Io(k), sink);
            return;
        }
        if c.queue.is_empty()
            && let Some(reason) = c.close_after_flush.take()
        {
            self.drop_conn(id, reason, sink);
            return;
        }
        let want_out = !c.queue.is_empty();
        if want_out != c.out_registered {
            c.out_registered = want_out;
            let mut ev = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
            if want_out {
                ev |= libc::EPOLLOUT as u32;
            }
            let _ = ctl(
                epfd,
                libc::EPOLL_CTL_MOD,
                c.fd.as_raw_fd(),
                ev,
                token(T_CONN, idx),
            );
        }
    }

    fn recv_udp<S: Sink>(&mut self, si: usize, sink: &mut S) {
        let fd = self.udp[si].fd.as_raw_fd();
        // Bounded work per readiness event; level-triggered epoll reports the rest next turn.
        for _ in 0..4 {
            let rb = &mut self.recv;
            let batch = rb.hdrs.len();
            for k in 0..batch {
                rb.iovs[k] = libc::iovec {
                    iov_base: rb.bufs.slot_ptr(k).cast(),
                    iov_len: rb.bufs.stride(),
                };
                let h = &mut rb.hdrs[k].msg_hdr;
                h.msg_name = (&raw mut rb.names[k]).cast();
                h.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
                h.msg_iov = &raw mut rb.iovs[k];
                h.msg_iovlen = 1;
                h.msg_control = rb.ctrls[k].as_mut_ptr().cast();
                h.msg_controllen = CMSG_SPACE as _;
                h.msg_flags = 0;
                rb.hdrs[k].msg_len = 0;
            }
            // SAFETY: every header points at memory owned by `rb`, alive across the call.
            let r = unsafe {
                libc::recvmmsg(
                    fd,
                    rb.hdrs.as_mut_ptr(),
                    batch as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if r <= 0 {
                return;
            }
            let n = r as usize;
            add(&sink.metrics().udp_rx, n as u64);
            for k in 0..n {
                let h = &rb.hdrs[k];
                if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                    add(&sink.metrics().udp_truncated, 1);
                    continue;
                }
                let Some(peer) = sys::from_sockaddr_bytes(sys::storage_bytes(
                    &rb.names[k],
                    h.msg_hdr.msg_namelen as usize,
                )) else {
                    continue;
                };
                let clen = h.msg_hdr.msg_controllen.min(CMSG_SPACE);
                let local = sys::parse_pktinfo(&rb.ctrls[k][..clen]);
                let len = h.msg_len as usize;
                if len > rb.bufs.resident() {
                    add(&sink.metrics().udp_rx_large, 1);
                }
                sink.datagram(Datagram {
                    socket: UdpSocketId(si as u32),
                    peer,
                    local,
                    data: rb.bufs.slot(k, len),
                });
            }
            // Hand back the pages large datagrams touched past the resident part.
            for k in 0..n {
                let len = rb.hdrs[k].msg_len as usize;
                rb.bufs.trim(k, len);
            }
            if n < batch {
                return;
            }
        }
    }

    fn accept<S: Sink>(&mut self, li: usize, sink: &mut S) {
        for _ in 0..64 {
            let lfd = self.listeners[li].as_raw_fd();
            // SAFETY: null address pointers are allowed; flags are valid.
            let fd = unsafe {
                libc::accept4(
                    lfd,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                return;
            }
            // SAFETY: accept4 returned a new fd that nobody else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            sys::set_nodelay(fd.as_raw_fd());
            let (Ok(peer), Ok(local)) = (
                sys::peer_addr(fd.as_raw_fd()),
                sys::local_addr(fd.as_raw_fd()),
            ) else {
                continue;
            };
            let id = sink.accepted(li as u32, peer, local);
            let ev = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
            if ctl(
                self.epfd.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                ev,
                token(T_CONN, id.index()),
            )
            .is_err()
            {
                sink.closed(id, CloseReason::Io(io::ErrorKind::Other));
                sink.released(id);
                continue;
            }
            self.insert(EConn {
                id,
                fd,
                peer,
                queue: VecDeque::new(),
                offset: 0,
                queued: 0,
                connecting: false,
                out_registered: false,
                close_after_flush: None,
            });
        }
    }

    fn conn_event<S: Sink>(&mut self, idx: u32, events: u32, sink: &mut S) {
        let Some(Some(c)) = self.conns.get_mut(idx as usize) else {
            return;
        };
        let id = c.id;
        if c.connecting {
            if events & (libc::EPOLLOUT | libc::EPOLLERR | libc::EPOLLHUP) as u32 == 0 {
                return;
            }
            let fd = c.fd.as_raw_fd();
            match sys::take_error(fd).and_then(|()| sys::local_addr(fd)) {
                Ok(local) => {
                    c.connecting = false;
                    let peer = c.peer;
                    sink.connected(id, Ok((peer, local)));
                    self.dirty.push(idx);
                }
                Err(e) => {
                    self.conns[idx as usize] = None;
                    sink.connected(id, Err(e));
                    sink.released(id);
                }
            }
            return;
        }
        if events & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0
        {
            for _ in 0..16 {
                let Some(Some(c)) = self.conns.get_mut(idx as usize) else {
                    return;
                };
                if c.id != id {
                    return;
                }
                let iov = libc::iovec {
                    iov_base: self.read_buf.as_mut_ptr().cast(),
                    iov_len: self.read_buf.len(),
                };
                // SAFETY: one iovec over `read_buf`, alive across the call.
                let r = unsafe { libc::readv(c.fd.as_raw_fd(), &iov, 1) };
                if r == 0 {
                    self.drop_conn(id, CloseReason::PeerClosed, sink);
                    return;
                }
                if r < 0 {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::WouldBlock => break,
                        io::ErrorKind::Interrupted => continue,
                        k => {
                            self.drop_conn(id, CloseReason::Io(k), sink);
                            return;
                        }
                    }
                }
                sink.stream_data(id, &self.read_buf[..r as usize]);
                if (r as usize) < self.read_buf.len() {
                    break;
                }
            }
        }
        if events & libc::EPOLLOUT as u32 != 0 {
            self.dirty.push(idx);
        }
    }
}

impl Backend for EpollBackend {
    fn turn<S: Sink>(&mut self, timeout: Option<Duration>, sink: &mut S) -> io::Result<()> {
        self.apply(sink);
        self.flush_udp(sink);
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for &i in &dirty {
            self.flush_conn(i, sink);
        }
        dirty.clear();
        self.dirty = dirty;
        let ms = match timeout {
            None => -1,
            Some(d) if d.is_zero() => 0,
            Some(d) => d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32,
        };
        // SAFETY: `events` is a live array of the advertised length.
        let n = unsafe {
            libc::epoll_wait(
                self.epfd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                ms,
            )
        };
        sink.woke();
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        for k in 0..n as usize {
            let ev = self.events[k];
            let (kind, idx) = (ev.u64 >> 56, ev.u64 as u32);
            match kind {
                T_BELL => {
                    let _ = self.bell_fd;
                    self.bell_drain.drain_eventfd();
                }
                T_UDP => self.recv_udp(idx as usize, sink),
                T_LISTEN => self.accept(idx as usize, sink),
                T_CONN => self.conn_event(idx, ev.events, sink),
                _ => {}
            }
        }
        Ok(())
    }

    fn shutdown<S: Sink>(&mut self, sink: &mut S) {
        let ids: Vec<ConnId> = self.conns.iter().flatten().map(|c| c.id).collect();
        for id in ids {
            self.drop_conn(id, CloseReason::Shutdown, sink);
        }
    }
}
