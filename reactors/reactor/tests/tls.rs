//! TLS loopback tests on both backends, reactor-to-reactor (the rustls server and client
//! transforms both run on the reactor): echo, SNI selection, certificate reload without
//! restart, and client-certificate verification (missing cert refused, valid cert accepted).
//! Certificates come from rcgen.

mod common;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use siphon_reactor::tls::{TlsClient, TlsServer};
use siphon_reactor::{
    CloseReason, ConnId, ConnInfo, ConnectError, Cx, Datagram, Handler, ListenTcp, Runtime, metrics,
};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new() -> Self {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("key");
        let cert = p.self_signed(&key).expect("ca");
        Self { cert, key }
    }
    /// (cert PEM, key PEM) for `name`, signed by this CA.
    fn issue(&self, name: &str) -> (Vec<u8>, Vec<u8>) {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec![name.to_owned()])
            .expect("params")
            .signed_by(&key, &self.cert, &self.key)
            .expect("sign");
        (cert.pem().into_bytes(), key.serialize_pem().into_bytes())
    }
    fn pem(&self) -> Vec<u8> {
        self.cert.pem().into_bytes()
    }
}

#[derive(Debug)]
enum Ev {
    Connected(Result<ConnInfo, ConnectError>),
    ClientGot(Vec<u8>),
    ClientClosed(CloseReason),
    ServerClosed(CloseReason),
}

struct Dial {
    addr: SocketAddr,
    client: TlsClient,
    name: &'static str,
}

struct Tls {
    ev: mpsc::Sender<Ev>,
    servers: Vec<ConnId>,
}

impl Handler for Tls {
    type Msg = Dial;
    fn on_datagram(&mut self, _cx: &mut Cx<'_, Dial>, _d: Datagram<'_>) {}

    fn on_message(&mut self, cx: &mut Cx<'_, Dial>, _from: Option<usize>, d: Dial) {
        cx.connect_tls(d.addr, &d.client, d.name, Some(Duration::from_secs(10)))
            .expect("client config");
    }

    fn on_accepted(&mut self, _cx: &mut Cx<'_, Dial>, conn: ConnId, info: ConnInfo) {
        assert!(info.tls);
        self.servers.push(conn);
    }

    fn on_connected(
        &mut self,
        cx: &mut Cx<'_, Dial>,
        conn: ConnId,
        r: Result<ConnInfo, ConnectError>,
    ) {
        if r.is_ok() {
            // Written before the handshake finishes: rustls holds it until then.
            cx.write(conn, b"INVITE over TLS\r\n").expect("open");
        }
        let _ = self.ev.send(Ev::Connected(r));
    }

    fn on_stream_data(&mut self, cx: &mut Cx<'_, Dial>, conn: ConnId, data: &[u8]) {
        if self.servers.contains(&conn) {
            cx.write(conn, data).expect("open");
        } else {
            let _ = self.ev.send(Ev::ClientGot(data.to_vec()));
            cx.close(conn);
        }
    }

    fn on_closed(&mut self, _cx: &mut Cx<'_, Dial>, conn: ConnId, reason: CloseReason) {
        let ev = if self.servers.contains(&conn) {
            Ev::ServerClosed(reason)
        } else {
            Ev::ClientClosed(reason)
        };
        let _ = self.ev.send(ev);
    }
}

fn start(b: siphon_reactor::BackendPref, server: TlsServer) -> (Runtime<Dial>, mpsc::Receiver<Ev>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let mut cfg = common::config(b);
    cfg.tcp = vec![ListenTcp {
        addr: "127.0.0.1:0".parse().expect("addr"),
        tls: Some(server),
    }];
    let rt = Runtime::start(cfg, move |_| Tls {
        ev: tx.lock().expect("lock").clone(),
        servers: vec![],
    })
    .expect("start");
    (rt, rx)
}

/// Dial and return what the client saw: Ok(echo) or Err(close reason).
fn dial(
    rt: &Runtime<Dial>,
    rx: &mpsc::Receiver<Ev>,
    client: &TlsClient,
    name: &'static str,
) -> Result<Vec<u8>, CloseReason> {
    let addr = rt.tcp_addrs()[0];
    rt.handle()
        .send(
            0,
            Dial {
                addr,
                client: client.clone(),
                name,
            },
        )
        .map_err(|_| ())
        .expect("room");
    loop {
        match rx.recv_timeout(Duration::from_secs(20)).expect("event") {
            Ev::ClientGot(d) => return Ok(d),
            // Our own close after the previous echo.
            Ev::ClientClosed(CloseReason::Local) => {}
            Ev::ClientClosed(r) => return Err(r),
            Ev::Connected(Err(e)) => panic!("tcp connect failed: {e:?}"),
            _ => {}
        }
    }
}

#[test]
fn tls_echo_sni_and_reload_without_restart() {
    let ca = Ca::new();
    let (c1, k1) = ca.issue("localhost");
    let (c2, k2) = ca.issue("sip.example");
    let (c3, k3) = ca.issue("reloaded.example");
    let client = TlsClient::from_pem(&ca.pem(), None).expect("client");
    for b in common::backends() {
        let server = TlsServer::from_pem(&c1, &k1, None).expect("server");
        server.add_sni("sip.example", &c2, &k2).expect("sni");
        let (rt, rx) = start(b, server.clone());
        assert_eq!(
            dial(&rt, &rx, &client, "localhost"),
            Ok(b"INVITE over TLS\r\n".to_vec()),
            "{b:?}"
        );
        // The client's graceful close sends close_notify; the server sees the peer close.
        loop {
            if let Ev::ServerClosed(r) = rx.recv_timeout(Duration::from_secs(20)).expect("event") {
                assert_eq!(r, CloseReason::PeerClosed, "{b:?}");
                break;
            }
        }
        // SNI: the default certificate does not cover sip.example, so success proves selection.
        assert_eq!(
            dial(&rt, &rx, &client, "sip.example"),
            Ok(b"INVITE over TLS\r\n".to_vec())
        );
        // Reload: the default certificate changes for the next handshake, no restart.
        server.reload(&c3, &k3).expect("reload");
        // A fresh client (no session ticket to resume) sees the new certificate.
        let fresh = TlsClient::from_pem(&ca.pem(), None).expect("client");
        let r = dial(&rt, &rx, &fresh, "localhost");
        assert!(
            matches!(r, Err(CloseReason::Tls(_))),
            "old name now rejected: {r:?}"
        );
        assert_eq!(
            dial(&rt, &rx, &fresh, "reloaded.example"),
            Ok(b"INVITE over TLS\r\n".to_vec())
        );
        let h = rt.handle();
        assert!(metrics::get(&h.metrics(0).expect("core0").tls_errors) >= 1);
        rt.shutdown().expect("shutdown");
    }
}

#[test]
fn tls_client_certificate_verification() {
    let ca = Ca::new();
    let (sc, sk) = ca.issue("localhost");
    let (cc, ck) = ca.issue("client.example");
    let anonymous = TlsClient::from_pem(&ca.pem(), None).expect("client");
    let with_cert = TlsClient::from_pem(&ca.pem(), Some((&cc, &ck))).expect("client");
    for b in common::backends() {
        let server = TlsServer::from_pem(&sc, &sk, Some(&ca.pem())).expect("server");
        let (rt, rx) = start(b, server);
        let r = dial(&rt, &rx, &anonymous, "localhost");
        assert!(
            r.is_err(),
            "a client without a certificate is refused on {b:?}: {r:?}"
        );
        assert_eq!(
            dial(&rt, &rx, &with_cert, "localhost"),
            Ok(b"INVITE over TLS\r\n".to_vec())
        );
        rt.shutdown().expect("shutdown");
    }
}
