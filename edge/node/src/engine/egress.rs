//! Bytes out: the proxy core's transmits over UDP or this core's streams (dialled on first
//! use, TLS with the configured trust roots), and transport errors, which fail the client
//! transactions towards that destination at the next drain.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;

use bytes::Bytes;
use siphon_reactor::Cx;
use siphon_sip::StreamFramer;
use siphon_sip::transaction::{Outgoing, Remote, Transmit, Transport};

use super::{Engine, Msg, Stream, transport_name};
use crate::metrics::{DropReason, TransportCause};

impl Engine {
    pub(super) fn transmit(&mut self, cx: &mut Cx<'_, Msg>, t: Transmit) {
        if let Outgoing::Response(r) = &t.message {
            self.m.response(r.status());
        }
        self.send(cx, t.destination, t.message.bytes().clone());
    }

    pub(super) fn send(&mut self, cx: &mut Cx<'_, Msg>, dest: Remote, bytes: Bytes) {
        match dest.transport {
            Transport::Udp => {
                let sock = match dest.addr.ip() {
                    IpAddr::V4(_) => self.shared.udp_v4,
                    IpAddr::V6(_) => self.shared.udp_v6,
                };
                match sock {
                    Some(s) => cx.send_to(s, dest.addr, None, &bytes),
                    None => {
                        self.transport_error(dest, TransportCause::NoSocket);
                    }
                }
            }
            Transport::Tcp | Transport::Tls => {
                let conn = match self.by_peer.get(&(dest.transport, dest.addr)) {
                    Some(c) => *c,
                    None => {
                        let c = if dest.transport == Transport::Tls {
                            let Some(client) = self.shared.tls_client.as_ref() else {
                                // No trust roots configured for outbound TLS.
                                self.m.dropped(DropReason::Stray);
                                return;
                            };
                            match cx.connect_tls(
                                dest.addr,
                                client,
                                &dest.addr.ip().to_string(),
                                None,
                            ) {
                                Ok(c) => c,
                                Err(_) => {
                                    self.transport_error(dest, TransportCause::Connect);
                                    return;
                                }
                            }
                        } else {
                            cx.connect(dest.addr, None)
                        };
                        self.by_peer.insert((dest.transport, dest.addr), c);
                        self.streams.insert(
                            c,
                            Stream {
                                framer: StreamFramer::new(),
                                peer: dest.addr,
                                transport: dest.transport,
                            },
                        );
                        c
                    }
                };
                if cx.write(conn, &bytes).is_err() {
                    self.transport_error(dest, TransportCause::Write);
                }
            }
            _ => self.m.dropped(DropReason::Stray),
        }
    }

    /// A stream to `peer` failed or closed: its client transactions fail (RFC 3261 §8.1.3.1)
    /// and move to the next resolved address (RFC 3263 §4.3).
    pub(super) fn transport_lost(
        &mut self,
        cx: &mut Cx<'_, Msg>,
        transport: Transport,
        peer: SocketAddr,
        cause: TransportCause,
    ) {
        self.transport_error(
            Remote {
                addr: peer,
                transport,
            },
            cause,
        );
        self.drain(cx);
    }

    /// Count and log a failed send to `dest`; its client transactions fail at the next drain.
    fn transport_error(&mut self, dest: Remote, cause: TransportCause) {
        self.m.transport_errors[cause as usize].fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            core = self.core,
            destination = %dest.addr,
            transport = transport_name(dest.transport),
            ?cause,
            "transport error towards a next hop: its transactions fail over or count as 503"
        );
        self.failed_dests.push(dest);
    }
}
