//! The copies a proxy sends on (RFC 3261 §16.6, §16.7 step 9): the received message plus an
//! edit list ([`crate::Editor`]), written once into the outgoing buffer and indexed as written,
//! never re-parsed or re-encoded (kamailio's `build_req_buf_from_sip_req` over its lumps).
//! Untouched header lines go out byte for byte as they came in.

use super::route::{Interface, is_local, is_our_record_route, strip_angle, uri_has_lr};
use crate::{EditError, Editor, HeaderName, Message};

/// What one client branch changes in the received request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BranchEdits<'a> {
    /// The top Via as the proxy core processed it (`received`/`rport` stamped, §18.2.1).
    pub(crate) top_via: Option<&'a str>,
    /// Our interfaces and domains (which Route values and Request-URIs name us).
    pub(crate) interfaces: &'a [Interface],
    /// See `interfaces`.
    pub(crate) domains: &'a [String],
    /// New Request-URI of the branch.
    pub(crate) uri: Option<&'a str>,
    /// The branch's own Route set (a binding's Path), replacing what is left.
    pub(crate) routes: &'a [String],
    /// Record-Route values to add, top first.
    pub(crate) record_routes: &'a [String],
    /// Our Via value (with the branch's branch parameter).
    pub(crate) via: Option<&'a str>,
}

/// RFC 3261 §18.2.1 / RFC 3581 §4: the editor's top Via becomes `stamped` (the received
/// value with `received` and a filled `rport`) when it differs.
pub(crate) fn stamp_top_via(ed: &mut Editor<'_>, stamped: Option<&str>) -> Result<(), EditError> {
    let Some(stamped) = stamped else {
        return Ok(());
    };
    if ed.current_first_value(HeaderName::Via) != Some(stamped) {
        ed.set_top_via(stamped)?;
    }
    Ok(())
}

/// §16.4 on the editor's view: the strict-route fix-up (the Request-URI is one of our
/// Record-Route URIs: the real target is the last Route value), then every top Route value
/// naming us popped. Returns whether the request was routed to us that way.
pub(crate) fn preprocess_routes(
    ed: &mut Editor<'_>,
    interfaces: &[Interface],
    domains: &[String],
) -> Result<bool, EditError> {
    let uri = ed.current_request_uri().unwrap_or("").to_string();
    let mut routes: Vec<String> = ed
        .current_values(HeaderName::Route)
        .into_iter()
        .map(str::to_string)
        .collect();
    let mut new_uri = None;
    if is_our_record_route(&uri, interfaces)
        && let Some(last) = routes.pop()
    {
        new_uri = Some(strip_angle(&last).to_string());
    }
    let mut popped = 0;
    while routes
        .get(popped)
        .is_some_and(|r| is_local(r, interfaces, domains))
    {
        popped += 1;
    }
    let fixed = new_uri.is_some();
    match new_uri {
        Some(u) => {
            ed.set_request_uri(&u)?;
            let rest: Vec<&str> = routes[popped..].iter().map(String::as_str).collect();
            ed.set_routes(&rest)?;
        }
        None => {
            for _ in 0..popped {
                ed.pop_route()?;
            }
        }
    }
    Ok(fixed || popped > 0)
}

/// §16.6 item 6: when the top Route is a strict router (no `lr`), the Request-URI goes to the
/// end of the Route set and the top Route becomes the Request-URI.
pub(crate) fn strict_next_hop(ed: &mut Editor<'_>) -> Result<(), EditError> {
    let routes = ed.current_values(HeaderName::Route);
    let Some(top) = routes.first().filter(|t| !uri_has_lr(t)) else {
        return Ok(());
    };
    let new_uri = strip_angle(top).to_string();
    let old = format!("<{}>", ed.current_request_uri().unwrap_or(""));
    let mut rest: Vec<String> = routes[1..].iter().map(|r| r.to_string()).collect();
    rest.push(old);
    ed.set_request_uri(&new_uri)?;
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    ed.set_routes(&rest)?;
    Ok(())
}

/// The copy of `request` one client branch sends (§16.6 items 1-8): the proxy's processing of
/// the received request (`received`/`rport`, §16.4 Route processing) and the branch's edits
/// (Request-URI, Path, Max-Forwards, Record-Route, strict next hop, our Via).
pub(crate) fn relay_request(request: &Message, e: &BranchEdits<'_>) -> Result<Message, EditError> {
    let mut ed = request.edit();
    stamp_top_via(&mut ed, e.top_via)?;
    preprocess_routes(&mut ed, e.interfaces, e.domains)?;
    if let Some(uri) = e.uri {
        ed.set_request_uri(uri)?;
    }
    if !e.routes.is_empty() {
        let routes: Vec<&str> = e.routes.iter().map(String::as_str).collect();
        ed.set_routes(&routes)?;
    }
    // §16.6 item 3 (a request at 0 was answered 483 before it got here).
    match ed.decrement_max_forwards() {
        Ok(_) | Err(EditError::TooManyHops) => {}
        Err(err) => return Err(err),
    }
    for rr in e.record_routes.iter().rev() {
        ed.insert_record_route(rr)?;
    }
    strict_next_hop(&mut ed)?;
    if let Some(via) = e.via {
        ed.push_via(via)?;
    }
    Ok(ed.to_message())
}

/// The copy of a branch response that goes upstream (§16.7 step 9): our Via removed.
pub(crate) fn relay_response(response: &Message) -> Result<Message, EditError> {
    let mut ed = response.edit();
    ed.pop_via()?;
    Ok(ed.to_message())
}
