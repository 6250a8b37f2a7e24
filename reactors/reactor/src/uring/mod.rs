//! The io_uring backend: one ring per reactor (SINGLE_ISSUER | DEFER_TASKRUN when available).
//!
//! Owns: the ring; two provided-buffer rings (group 0 for UDP datagrams, group 1 for TCP
//! reads); the multishot RECVMSG per UDP socket, the multishot ACCEPT per listener, the
//! multishot buffer-select RECV per connection, the doorbell READ; SENDMSG slots for datagrams
//! and one in-flight SEND per connection (ordered writes).
//!
//! Buffer lifetime rule (STYLE 3.7): memory handed to the kernel is owned by the operation
//! until its final completion arrives. A datagram buffer returns to its ring after the handler
//! callback; a send slot (msghdr, iovec, sockaddr, cmsg, payload) is freed on its CQE; a
//! connection closed with operations in flight is cancelled (ASYNC_CANCEL) and kept as a
//! zombie, with its fd open and its queued write buffer alive, until every cancelled
//! operation has completed. Shutdown cancels everything and reaps completions before the ring
//! and the buffers are dropped.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use io_uring::types::{Fd, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};

use crate::config::Config;
use crate::cx::{Command, Sink};
use crate::mesh::Bell;
use crate::metrics::{add, sub};
use crate::runtime::{Backend, CoreSockets, take_commands};
use crate::sys::{self, CMSG_SPACE};
use crate::{CloseReason, ConnId, Datagram, UdpSocketId};

mod bufring;

use bufring::BufRing;
pub(crate) use bufring::PageAlloc;

const U_BELL: u64 = 1;
const U_UDP: u64 = 2;
const U_SEND: u64 = 3;
/// Most UDP send completions one wait counts before the event it waits for.
const MAX_SENDS_AWAITED: u32 = 32;
const U_ACCEPT: u64 = 4;
const U_RECV: u64 = 5;
const U_WRITE: u64 = 6;
const U_CONNECT: u64 = 7;
const U_CANCEL: u64 = 8;
const BGID_UDP: u16 = 0;
const BGID_TCP: u16 = 1;
const LOW56: u64 = (1 << 56) - 1;
/// `sizeof(struct io_uring_recvmsg_out)`: the header a multishot RECVMSG writes first.
const RECVMSG_OUT_LEN: usize = 16;

fn ud(kind: u64, payload: u64) -> u64 {
    (kind << 56) | (payload & LOW56)
}

struct USock {
    fd: OwnedFd,
    v6: bool,
    wildcard: bool,
    armed: bool,
}

/// Everything a SENDMSG needs, kept at a stable address until its CQE.
struct SendSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_storage,
    ctrl: [u8; CMSG_SPACE],
    buf: Vec<u8>,
}

struct UConn {
    id: ConnId,
    fd: OwnedFd,
    peer: SocketAddr,
    queue: VecDeque<Vec<u8>>,
    offset: usize,
    queued: usize,
    connecting: bool,
    connect_addr: Option<Box<(libc::sockaddr_storage, libc::socklen_t)>>,
    recv_armed: bool,
    send_inflight: bool,
    /// Operations whose final CQE has not arrived.
    ops: u32,
    closing: bool,
    /// Graceful close requested: close when the queue is empty.
    close_after_flush: Option<CloseReason>,
}

pub(crate) struct UringBackend {
    // Field order matters: the ring is dropped before the memory the kernel may touch.
    ring: IoUring,
    core: usize,
    bell_fd: RawFd,
    bell_buf: Box<u64>,
    bell_armed: bool,
    udp: Vec<USock>,
    listeners: Vec<(OwnedFd, bool)>,
    udp_bufs: BufRing,
    tcp_bufs: BufRing,
    msg_template: Box<libc::msghdr>,
    // Boxed on purpose: the kernel holds pointers into each slot until its CQE, and a Vec of
    // plain slots would move them when it grows.
    #[allow(clippy::vec_box)]
    sends: Vec<Box<SendSlot>>,
    free_sends: Vec<u32>,
    conns: Vec<Option<UConn>>,
    inflight: usize,
    /// UDP sends queued since the last reap: each posts one CQE, almost always during the
    /// submitting `io_uring_enter` itself (a UDP send completes inline). The wait counts them
    /// in its `min_complete`, so a turn that just sent does not return at once for their
    /// completions and cost another loop turn and syscall before it sleeps.
    udp_sends_unreaped: u32,
    cmds: Vec<Command>,
    cqes: Vec<(u64, i32, u32)>,
    write_limit: usize,
    rearm_recv: Vec<ConnId>,
    kick: Vec<ConnId>,
    shutting_down: bool,
}

// SAFETY: the raw pointers inside (the msghdr template, the buffer ring's pages, send slots)
// point into memory this backend owns and frees, never into another thread's stack or
// thread-local state, and the ring fd may be used from any thread. Moving the backend to
// another thread, or using it from the core's standby thread while holding the core's mutex
// (handover.rs: one thread at a time), is sound.
unsafe impl Send for UringBackend {}

impl UringBackend {
    pub(crate) fn new(
        config: &Config,
        socks: CoreSockets,
        bell: &std::sync::Arc<Bell>,
        core: usize,
        shared_ring: bool,
    ) -> io::Result<Self> {
        let entries = config.ring_entries.max(64).next_power_of_two();
        let cq = (entries * 4).max(2 * (config.udp_buffers as u32 + config.tcp_buffers as u32));
        // A ring one thread drives takes SINGLE_ISSUER | DEFER_TASKRUN (completions run when
        // that thread waits); a core with a standby thread (handover.rs) needs a ring either
        // thread may submit to and reap.
        let exclusive = || {
            IoUring::builder()
                .setup_single_issuer()
                .setup_defer_taskrun()
                .setup_cqsize(cq)
                .build(entries)
        };
        let ring = if shared_ring {
            IoUring::builder().setup_cqsize(cq).build(entries)?
        } else {
            exclusive().or_else(|_| IoUring::builder().setup_cqsize(cq).build(entries))?
        };
        // Each UDP buffer offers the largest datagram plus the kernel's recvmsg header, the name
        // and the pktinfo cmsg (a multishot RECVMSG cannot re-read a truncated datagram), and
        // keeps `udp_buffer_size` bytes of it in memory (slab.rs).
        let udp_bufs = BufRing::new(
            &ring,
            config.udp_buffers,
            RECVMSG_OUT_LEN
                .saturating_add(sys::NAME_LEN as usize + CMSG_SPACE)
                .saturating_add(config.udp_max_datagram as usize),
            (config.udp_buffer_size as usize).max(512),
            BGID_UDP,
        )?;
        let tcp_bufs = BufRing::new(
            &ring,
            config.tcp_buffers,
            config.tcp_buffer_size as usize,
            config.tcp_buffer_size as usize,
            BGID_TCP,
        )?;
        // SAFETY: msghdr is plain old data; zero is valid.
        let mut tmpl: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        tmpl.msg_namelen = sys::NAME_LEN;
        tmpl.msg_controllen = CMSG_SPACE as _;
        let bell_fd = bell
            .fd()
            .ok_or_else(|| io::Error::other("reactor bell must be an eventfd"))?;
        let udp = socks
            .udp
            .into_iter()
            .map(|(fd, a)| USock {
                fd,
                v6: a.is_ipv6(),
                wildcard: a.ip().is_unspecified(),
                armed: false,
            })
            .collect();
        let listeners = socks.tcp.into_iter().map(|(fd, _)| (fd, false)).collect();
        Ok(Self {
            ring,
            core,
            bell_fd,
            bell_buf: Box::new(0),
            bell_armed: false,
            udp,
            listeners,
            udp_bufs,
            tcp_bufs,
            msg_template: tmpl,
            sends: Vec::new(),
            free_sends: Vec::new(),
            conns: Vec::new(),
            inflight: 0,
            udp_sends_unreaped: 0,
            cmds: Vec::new(),
            cqes: Vec::with_capacity(1024),
            write_limit: config.write_queue_limit,
            rearm_recv: Vec::new(),
            kick: Vec::new(),
            shutting_down: false,
        })
    }

    /// Queue an SQE, submitting first if the queue is full.
    ///
    /// # Safety
    /// Every pointer in `e` must stay valid until the operation's final CQE.
    unsafe fn push(&mut self, e: squeue::Entry) {
        loop {
            // SAFETY: forwarded from the caller's contract.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return;
            }
            let _ = self.ring.submit();
        }
    }

    fn conn_payload(id: ConnId) -> u64 {
        id.as_u64() & LOW56
    }

    fn conn_from(&self, payload: u64) -> ConnId {
        ConnId::from_u64(((self.core as u64) << 56) | payload)
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut UConn> {
        self.conns
            .get_mut(id.index() as usize)?
            .as_mut()
            .filter(|c| c.id == id)
    }

    fn arm(&mut self) {
        if !self.bell_armed && !self.shutting_down {
            let e = opcode::Read::new(Fd(self.bell_fd), (&raw mut *self.bell_buf).cast(), 8)
                .build()
                .user_data(ud(U_BELL, 0));
            // SAFETY: `bell_buf` is boxed in self and outlives the op (reaped before drop).
            unsafe { self.push(e) };
            self.bell_armed = true;
            self.inflight += 1;
        }
        for i in 0..self.udp.len() {
            if self.udp[i].armed || self.shutting_down {
                continue;
            }
            let e = opcode::RecvMsgMulti::new(
                Fd(self.udp[i].fd.as_raw_fd()),
                &raw const *self.msg_template,
                BGID_UDP,
            )
            .build()
            .user_data(ud(U_UDP, i as u64));
            // SAFETY: the msghdr template is boxed in self and outlives the op.
            unsafe { self.push(e) };
            self.udp[i].armed = true;
            self.inflight += 1;
        }
        for i in 0..self.listeners.len() {
            if self.listeners[i].1 || self.shutting_down {
                continue;
            }
            let e = opcode::AcceptMulti::new(Fd(self.listeners[i].0.as_raw_fd()))
                .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
                .build()
                .user_data(ud(U_ACCEPT, i as u64));
            // SAFETY: no user memory is referenced.
            unsafe { self.push(e) };
            self.listeners[i].1 = true;
            self.inflight += 1;
        }
        let rearm = std::mem::take(&mut self.rearm_recv);
        for id in &rearm {
            self.arm_recv(*id);
        }
        self.rearm_recv = rearm;
        self.rearm_recv.clear();
        let kick = std::mem::take(&mut self.kick);
        for id in &kick {
            self.kick_send(*id);
        }
        self.kick = kick;
        self.kick.clear();
    }

    fn arm_recv(&mut self, id: ConnId) {
        let Some(c) = self.conn_mut(id) else { return };
        if c.recv_armed || c.closing || c.connecting {
            return;
        }
        c.recv_armed = true;
        c.ops += 1;
        let e = opcode::RecvMulti::new(Fd(c.fd.as_raw_fd()), BGID_TCP)
            .build()
            .user_data(ud(U_RECV, Self::conn_payload(id)));
        self.inflight += 1;
        // SAFETY: buffers come from the registered ring; no other user memory.
        unsafe { self.push(e) };
    }

    fn kick_send(&mut self, id: ConnId) {
        let Some(c) = self.conn_mut(id) else { return };
        if c.send_inflight || c.closing || c.connecting {
            return;
        }
        let Some(front) = c.queue.front() else { return };
        let ptr = front[c.offset..].as_ptr();
        let len = (front.len() - c.offset) as u32;
        c.send_inflight = true;
        c.ops += 1;
        let e = opcode::Send::new(Fd(c.fd.as_raw_fd()), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(ud(U_WRITE, Self::conn_payload(id)));
        self.inflight += 1;
        // SAFETY: the front buffer stays in `c.queue` (even if the connection closes) until this
        // op's CQE; Vec contents do not move when the VecDeque reallocates.
        unsafe { self.push(e) };
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
                } => self.send_udp(sock as usize, peer, local, buf, sink),
                Command::Write { conn, buf } => {
                    let limit = self.write_limit;
                    let Some(c) = self.conn_mut(conn) else {
                        sink.recycle(buf);
                        continue;
                    };
                    if c.closing || c.close_after_flush.is_some() {
                        sink.recycle(buf);
                        continue;
                    }
                    if c.queued + buf.len() > limit {
                        sink.recycle(buf);
                        self.close_conn(conn, CloseReason::WriteQueueFull, sink);
                        continue;
                    }
                    c.queued += buf.len();
                    c.queue.push_back(buf);
                    self.kick_send(conn);
                }
                Command::Connect { conn, peer } => self.start_connect(conn, peer, sink),
                Command::Close {
                    conn,
                    reason,
                    graceful,
                } => match self.conn_mut(conn) {
                    Some(c) if graceful && !c.queue.is_empty() && !c.closing && !c.connecting => {
                        c.close_after_flush = Some(reason);
                    }
                    _ => self.close_conn(conn, reason, sink),
                },
                Command::TrimReceiveBuffers => {
                    // Between turns every buffer is back in its ring (completions recycle
                    // theirs at once) and the kernel fills them only in this thread's
                    // io_uring_enter.
                    self.udp_bufs.bufs.release();
                    self.tcp_bufs.bufs.release();
                }
            }
        }
        self.cmds = cmds;
    }

    fn send_udp<S: Sink>(
        &mut self,
        si: usize,
        peer: SocketAddr,
        local: Option<IpAddr>,
        buf: Vec<u8>,
        sink: &mut S,
    ) {
        let Some(sock) = self.udp.get(si) else {
            sink.recycle(buf);
            return;
        };
        let (fd, v6, wildcard) = (sock.fd.as_raw_fd(), sock.v6, sock.wildcard);
        let idx = match self.free_sends.pop() {
            Some(i) => i as usize,
            None => {
                self.sends.push(Box::new(SendSlot {
                    // SAFETY: plain old data; zero is valid.
                    hdr: unsafe { std::mem::zeroed() },
                    iov: libc::iovec {
                        iov_base: std::ptr::null_mut(),
                        iov_len: 0,
                    },
                    // SAFETY: plain old data; zero is valid.
                    addr: unsafe { std::mem::zeroed() },
                    ctrl: [0; CMSG_SPACE],
                    buf: Vec::new(),
                }));
                self.sends.len() - 1
            }
        };
        let s = &mut *self.sends[idx];
        s.buf = buf;
        let (sa, len) = sys::to_sockaddr(&peer);
        s.addr = sa;
        s.iov = libc::iovec {
            iov_base: s.buf.as_mut_ptr().cast(),
            iov_len: s.buf.len(),
        };
        // SAFETY: plain old data; zero is valid.
        s.hdr = unsafe { std::mem::zeroed() };
        s.hdr.msg_name = (&raw mut s.addr).cast();
        s.hdr.msg_namelen = len;
        s.hdr.msg_iov = &raw mut s.iov;
        s.hdr.msg_iovlen = 1;
        if let Some(local) = local.filter(|_| wildcard) {
            let clen = sys::write_pktinfo(&mut s.ctrl, local, v6);
            if clen > 0 {
                s.hdr.msg_control = s.ctrl.as_mut_ptr().cast();
                s.hdr.msg_controllen = clen as _;
            }
        }
        let e = opcode::SendMsg::new(Fd(fd), &raw const s.hdr)
            .build()
            .user_data(ud(U_SEND, idx as u64));
        self.inflight += 1;
        self.udp_sends_unreaped += 1;
        // SAFETY: the slot is boxed (stable address) and not reused until this op's CQE.
        unsafe { self.push(e) };
    }

    fn start_connect<S: Sink>(&mut self, conn: ConnId, peer: SocketAddr, sink: &mut S) {
        let fd = match sys::tcp_socket(&peer) {
            Ok(fd) => fd,
            Err(e) => {
                sink.connected(conn, Err(e));
                sink.released(conn);
                return;
            }
        };
        let addr = Box::new(sys::to_sockaddr(&peer));
        let e = opcode::Connect::new(Fd(fd.as_raw_fd()), (&raw const addr.0).cast(), addr.1)
            .build()
            .user_data(ud(U_CONNECT, Self::conn_payload(conn)));
        let i = conn.index() as usize;
        if self.conns.len() <= i {
            self.conns.resize_with(i + 1, || None);
        }
        self.conns[i] = Some(UConn {
            id: conn,
            fd,
            peer,
            queue: VecDeque::new(),
            offset: 0,
            queued: 0,
            connecting: true,
            connect_addr: Some(addr),
            recv_armed: false,
            send_inflight: false,
            ops: 1,
            closing: false,
            close_after_flush: None,
        });
        self.inflight += 1;
        // SAFETY: the sockaddr is boxed in the connection, which outlives the op (zombie rule).
        unsafe { self.push(e) };
    }

    /// Close a connection: tell the handler now, cancel in-flight ops, free when they complete.
    fn close_conn<S: Sink>(&mut self, id: ConnId, reason: CloseReason, sink: &mut S) {
        let Some(c) = self.conn_mut(id) else { return };
        if c.closing {
            return;
        }
        c.closing = true;
        // Queued buffers not yet handed to the kernel can go; the in-flight front stays.
        let keep = usize::from(c.send_inflight);
        let drop_from: Vec<Vec<u8>> = c.queue.drain(keep..).collect();
        let mut cancels = Vec::new();
        if c.recv_armed {
            cancels.push(ud(U_RECV, Self::conn_payload(id)));
        }
        if c.send_inflight {
            cancels.push(ud(U_WRITE, Self::conn_payload(id)));
        }
        if c.connecting {
            cancels.push(ud(U_CONNECT, Self::conn_payload(id)));
        }
        let ops = c.ops;
        for b in drop_from {
            sink.recycle(b);
        }
        for target in &cancels {
            let e = opcode::AsyncCancel::new(*target)
                .build()
                .user_data(ud(U_CANCEL, 0));
            // SAFETY: no user memory is referenced by a cancel.
            unsafe { self.push(e) };
            add(&sink.metrics().ops_cancelled, 1);
        }
        if ops > 0 {
            // Counted before the handler hears of the close, so it can observe the zombie.
            add(&sink.metrics().zombie_conns, 1);
        }
        sink.closed(id, reason);
        if ops == 0 {
            self.finalize(id, sink);
        }
    }

    fn finalize<S: Sink>(&mut self, id: ConnId, sink: &mut S) {
        let i = id.index() as usize;
        if let Some(c) = self.conns[i].take() {
            for b in c.queue {
                sink.recycle(b);
            }
            drop(c.fd);
            sink.released(id);
        }
    }

    /// One op of a connection reached its final CQE; returns false if the connection is closing
    /// (and was finalized when nothing is left in flight).
    fn op_done<S: Sink>(&mut self, id: ConnId, sink: &mut S) -> bool {
        let Some(c) = self.conn_mut(id) else {
            return false;
        };
        c.ops -= 1;
        if !c.closing {
            return true;
        }
        add(&sink.metrics().cancelled_completions, 1);
        if c.ops == 0 {
            sub(&sink.metrics().zombie_conns, 1);
            self.finalize(id, sink);
        }
        false
    }

    fn complete<S: Sink>(&mut self, user_data: u64, res: i32, flags: u32, sink: &mut S) {
        let kind = user_data >> 56;
        let payload = user_data & LOW56;
        let more = cqueue::more(flags);
        if !more && kind != U_CANCEL {
            self.inflight = self.inflight.saturating_sub(1);
        }
        match kind {
            U_BELL => self.bell_armed = false,
            U_UDP => self.udp_done(payload as usize, res, flags, sink),
            U_SEND => {
                let idx = payload as usize;
                if res < 0 {
                    add(&sink.metrics().udp_tx_errors, 1);
                } else {
                    add(&sink.metrics().udp_tx, 1);
                }
                let buf = std::mem::take(&mut self.sends[idx].buf);
                sink.recycle(buf);
                self.free_sends.push(idx as u32);
            }
            U_ACCEPT => {
                let li = payload as usize;
                if !more {
                    self.listeners[li].1 = false;
                    add(&sink.metrics().rearms, 1);
                }
                if res >= 0 {
                    // SAFETY: a successful accept CQE carries a new fd that nobody else owns.
                    let fd = unsafe { OwnedFd::from_raw_fd(res) };
                    if self.shutting_down {
                        return;
                    }
                    sys::set_nodelay(fd.as_raw_fd());
                    let (Ok(peer), Ok(local)) = (
                        sys::peer_addr(fd.as_raw_fd()),
                        sys::local_addr(fd.as_raw_fd()),
                    ) else {
                        return;
                    };
                    let id = sink.accepted(li as u32, peer, local);
                    let i = id.index() as usize;
                    if self.conns.len() <= i {
                        self.conns.resize_with(i + 1, || None);
                    }
                    self.conns[i] = Some(UConn {
                        id,
                        fd,
                        peer,
                        queue: VecDeque::new(),
                        offset: 0,
                        queued: 0,
                        connecting: false,
                        connect_addr: None,
                        recv_armed: false,
                        send_inflight: false,
                        ops: 0,
                        closing: false,
                        close_after_flush: None,
                    });
                    self.arm_recv(id);
                }
            }
            U_RECV => self.recv_done(self.conn_from(payload), res, flags, sink),
            U_WRITE => {
                let id = self.conn_from(payload);
                if let Some(c) = self.conn_mut(id) {
                    c.send_inflight = false;
                }
                if !self.op_done(id, sink) {
                    return;
                }
                if res < 0 {
                    self.close_conn(
                        id,
                        CloseReason::Io(io::Error::from_raw_os_error(-res).kind()),
                        sink,
                    );
                    return;
                }
                let Some(c) = self.conn_mut(id) else { return };
                let n = res as usize;
                c.offset += n;
                c.queued -= n;
                add(&sink.metrics().tcp_tx_bytes, n as u64);
                if c.queue.front().is_some_and(|b| c.offset >= b.len()) {
                    c.offset = 0;
                    if let Some(b) = c.queue.pop_front() {
                        sink.recycle(b);
                    }
                }
                if c.queue.is_empty()
                    && let Some(reason) = c.close_after_flush.take()
                {
                    self.close_conn(id, reason, sink);
                    return;
                }
                self.kick_send(id);
            }
            U_CONNECT => {
                let id = self.conn_from(payload);
                if !self.op_done(id, sink) {
                    return;
                }
                let Some(c) = self.conn_mut(id) else { return };
                c.connect_addr = None;
                if res < 0 {
                    let e = io::Error::from_raw_os_error(-res);
                    if let Some(c) = self.conns[id.index() as usize].take() {
                        drop(c.fd);
                    }
                    sink.connected(id, Err(e));
                    sink.released(id);
                    return;
                }
                c.connecting = false;
                let peer = c.peer;
                let local = sys::local_addr(c.fd.as_raw_fd());
                match local {
                    Ok(local) => {
                        sink.connected(id, Ok((peer, local)));
                        self.arm_recv(id);
                        self.kick_send(id);
                    }
                    Err(e) => {
                        if let Some(c) = self.conns[id.index() as usize].take() {
                            drop(c.fd);
                        }
                        sink.connected(id, Err(e));
                        sink.released(id);
                    }
                }
            }
            _ => {}
        }
    }

    fn udp_done<S: Sink>(&mut self, si: usize, res: i32, flags: u32, sink: &mut S) {
        if !cqueue::more(flags) {
            self.udp[si].armed = false;
            add(&sink.metrics().rearms, 1);
        }
        if res < 0 {
            if res == -libc::ENOBUFS {
                add(&sink.metrics().buf_exhausted, 1);
                self.udp_bufs.exhausted();
            }
            return;
        }
        let Some(bid) = cqueue::buffer_select(flags) else {
            return;
        };
        let used = res as usize;
        if !self.shutting_down {
            let data = self.udp_bufs.buf(bid, used);
            match RecvMsgOut::parse(data, &self.msg_template) {
                Ok(out) if !out.is_payload_truncated() => {
                    add(&sink.metrics().udp_rx, 1);
                    if used > self.udp_bufs.bufs.resident() {
                        add(&sink.metrics().udp_rx_large, 1);
                    }
                    if let Some(peer) = sys::from_sockaddr_bytes(out.name_data()) {
                        let local = sys::parse_pktinfo(out.control_data());
                        sink.datagram(Datagram {
                            socket: UdpSocketId(si as u32),
                            peer,
                            local,
                            data: out.payload_data(),
                        });
                    }
                }
                _ => add(&sink.metrics().udp_truncated, 1),
            }
        }
        self.udp_bufs.recycle(bid, used);
    }

    fn recv_done<S: Sink>(&mut self, id: ConnId, res: i32, flags: u32, sink: &mut S) {
        let more = cqueue::more(flags);
        let bid = cqueue::buffer_select(flags);
        if !more {
            if let Some(c) = self.conn_mut(id) {
                c.recv_armed = false;
            }
            if !self.op_done(id, sink) {
                if let Some(b) = bid {
                    self.tcp_bufs.give_back(b);
                }
                return;
            }
        } else if self.conn_mut(id).is_none_or(|c| c.closing) {
            if let Some(b) = bid {
                self.tcp_bufs.give_back(b);
            }
            return;
        }
        if res > 0 {
            if let Some(b) = bid {
                sink.stream_data(id, self.tcp_bufs.buf(b, res as usize));
                self.tcp_bufs.give_back(b);
            }
        } else if res == 0 {
            self.close_conn(id, CloseReason::PeerClosed, sink);
            return;
        } else if res == -libc::ENOBUFS {
            add(&sink.metrics().buf_exhausted, 1);
            self.tcp_bufs.exhausted();
        } else if res != -libc::ECANCELED {
            self.close_conn(
                id,
                CloseReason::Io(io::Error::from_raw_os_error(-res).kind()),
                sink,
            );
            return;
        }
        if !more && self.conn_mut(id).is_some_and(|c| !c.closing) {
            add(&sink.metrics().rearms, 1);
            self.rearm_recv.push(id);
        }
    }

    /// Submit this turn's SQEs and wait for one CQE or the timeout. (Waiting for
    /// `sends + 1` CQEs with MIN_TIMEOUT, to skip the wake-up on inline send completions, was
    /// measured in bench/echo and gave no gain, so the simple form stays.)
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        // One event beyond the UDP sends' own completions (bounded: past the cap a burst only
        // wakes early, which is harmless).
        let want = 1 + self.udp_sends_unreaped.min(MAX_SENDS_AWAITED) as usize;
        let r = match timeout {
            None => self.ring.submit_and_wait(want),
            Some(d) => {
                let ts = Timespec::new().sec(d.as_secs()).nsec(d.subsec_nanos());
                let args = SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(want, &args)
            }
        };
        match r {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn reap<S: Sink>(&mut self, sink: &mut S) {
        self.udp_sends_unreaped = 0;
        loop {
            self.cqes.clear();
            for c in self.ring.completion().take(1024) {
                self.cqes.push((c.user_data(), c.result(), c.flags()));
            }
            if self.cqes.is_empty() {
                break;
            }
            let cqes = std::mem::take(&mut self.cqes);
            for &(u, r, f) in &cqes {
                self.complete(u, r, f, sink);
            }
            self.cqes = cqes;
        }
        self.udp_bufs.publish();
        self.tcp_bufs.publish();
    }
}

impl Backend for UringBackend {
    fn turn<S: Sink>(&mut self, timeout: Option<Duration>, sink: &mut S) -> io::Result<()> {
        self.apply(sink);
        self.arm();
        self.wait(timeout)?;
        sink.woke();
        self.reap(sink);
        Ok(())
    }

    fn shutdown<S: Sink>(&mut self, sink: &mut S) {
        self.apply(sink);
        self.shutting_down = true;
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .flatten()
            .filter(|c| !c.closing)
            .map(|c| c.id)
            .collect();
        for id in ids {
            self.close_conn(id, CloseReason::Shutdown, sink);
        }
        let mut cancels = Vec::new();
        if self.bell_armed {
            cancels.push(ud(U_BELL, 0));
        }
        for (i, s) in self.udp.iter().enumerate() {
            if s.armed {
                cancels.push(ud(U_UDP, i as u64));
            }
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if l.1 {
                cancels.push(ud(U_ACCEPT, i as u64));
            }
        }
        for t in cancels {
            let e = opcode::AsyncCancel::new(t)
                .build()
                .user_data(ud(U_CANCEL, 0));
            // SAFETY: no user memory is referenced by a cancel.
            unsafe { self.push(e) };
        }
        // Reap until every op that references our memory has completed (bounded).
        for _ in 0..200 {
            if self.inflight == 0 {
                break;
            }
            if self.wait(Some(Duration::from_millis(10))).is_err() {
                break;
            }
            self.reap(sink);
        }
        if self.inflight != 0 {
            tracing::warn!(
                inflight = self.inflight,
                "io_uring ops still in flight at shutdown; leaking their buffers"
            );
            // Keep the memory alive forever rather than risk the kernel writing into freed
            // buffers.
            self.udp_bufs.bufs.leak();
            self.tcp_bufs.bufs.leak();
            std::mem::forget(std::mem::take(&mut self.sends));
            std::mem::forget(std::mem::take(&mut self.conns));
        }
    }
}

impl Drop for UringBackend {
    fn drop(&mut self) {
        let _ = self
            .ring
            .submitter()
            .unregister_buf_ring(self.udp_bufs.bgid);
        let _ = self
            .ring
            .submitter()
            .unregister_buf_ring(self.tcp_bufs.bgid);
    }
}
