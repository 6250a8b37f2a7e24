//! siphon scripting host: embeds CPython with one own-GIL subinterpreter per core (Python
//! ≥ 3.12; one shared interpreter thread on 3.11), the raw-ffi `_siphon` native module, and the
//! embedded `siphon` Python package that runs SIPhon routing scripts unchanged
//! (siphon-core-api.md §1; design and measurements: feasibility-python.md).
//!
//! The boundary to the reactors is two rings per core: [`Event`] in, [`Actions`] out
//! ([`HostHandle::submit`], [`HostHandle::poll`]). Python objects never cross it or an interpreter.
//!
//! Module-level Python state is per core by construction (each core has its own interpreter):
//! share state through `siphon.cache` or `siphon.registrar`, which live in Rust.

pub mod event;
pub mod host;
pub mod http;
pub mod limits;
pub mod message;
mod native;
pub mod presence;
mod py;
mod reload;
pub mod shared;
pub mod smpp;
pub mod state;
mod worker;

pub use event::{
    Actions, Disposition, Event, EventKind, ForkStrategy, ForkTarget, Meta, OutboundRequest,
};
pub use host::{
    AuthObserver, Doorbell, Host, HostConfig, HostError, HostHandle, InlineWorker, LogSink, Mode,
    ReloadMode, python_version,
};
pub use http::{
    HttpAnswer, HttpCall, HttpClientSpec, HttpCompleter, HttpInbound, HttpReply, HttpSink,
    Responder, RouteDef,
};
pub use limits::HostLimits;
pub use message::SipMessage;
pub use smpp::{SmppAnswer, SmppEvent, SmppOut, SmppSend, SmppValue, SmppVia, bind_owner};
pub use worker::LogLevel;
