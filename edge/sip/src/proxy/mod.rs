//! Proxy core, RFC 3261 §16, sans-IO: response contexts with parallel and sequential forking
//! and response aggregation (`core`), Via branches that carry the owning core and the loop
//! hash (`branch`), and Route/Record-Route/Via helpers (`route`). Request validation
//! (400/416/420/483/505) is the message layer's; loop detection (482) is here.

mod branch;
mod core;
mod relay;
mod route;
mod select;
mod steer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tu_tests;

pub use branch::{Branch, branch_loop_hash, loop_hash, owner_core, stateless_branch};
pub use core::{
    Answer, ContextId, DEFAULT_UDP_MTU, Hooks, Proxy, ProxyConfig, ProxyError, ProxyEvent, ReplyId,
    Target,
};
pub(crate) use relay::relay_response;
pub use route::{
    Interface, is_local, is_our_record_route, next_hop_uri, preprocess_routes, stamp_received,
    strict_next_hop, strip_angle, uri_has_lr, uri_host_port, via_destination, via_transport,
};
pub use steer::{SCAN_WINDOW, SockFilter, steering_program};
