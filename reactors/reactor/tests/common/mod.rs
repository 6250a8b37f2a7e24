//! Shared helpers for the loopback tests: which backends to run, and small handlers.
#![allow(dead_code)] // each test file uses a subset

use std::net::UdpSocket;
use std::time::Duration;

use siphon_reactor::{BackendPref, Config, probe};

/// The backends every test runs against. io_uring is skipped only when the probe fails, and
/// then the reason is printed (never a silent pass).
pub fn backends() -> Vec<BackendPref> {
    let mut v = vec![BackendPref::Epoll];
    match probe::probe() {
        Ok(_) => v.push(BackendPref::Uring),
        Err(why) => eprintln!("io_uring unavailable here ({why}); testing epoll only"),
    }
    v
}

pub fn config(backend: BackendPref) -> Config {
    Config {
        cpus: vec![0],
        pin: false,
        backend,
        ..Config::default()
    }
}

pub fn client(addr: &str) -> UdpSocket {
    let s = UdpSocket::bind(addr).expect("bind client");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// `recv_from` that retries when a signal interrupts the call (EINTR is not an answer).
pub fn recv(c: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, std::net::SocketAddr)> {
    loop {
        match c.recv_from(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}
