//! siphon-bin: the composition root. Config (`siphon.yaml`), `siphon check`, and the wiring
//! of the SIP core (edge/sip), the reactors and the script workers into the `siphon` node.
//! Unlike the protocol crates this one does I/O; it has its own clippy.toml.

pub mod alloc;
pub mod check;
pub mod config;
pub mod dns;
pub mod engine;
#[cfg(feature = "http")]
pub mod http;
pub mod limits;
pub mod metrics;
pub mod node;
pub mod security;
#[cfg(feature = "smpp")]
pub mod smpp;
