//! `_siphon`: the native module every interpreter imports. Raw-ffi, multi-phase, declaring
//! per-interpreter-GIL support (feasibility-python.md §3: pyo3's `#[pymodule]` is refused in
//! own-GIL subinterpreters). Functions are METH_FASTCALL and take the event handle `h` first;
//! message fields are pulled lazily by name, nothing is converted up front.
//!
//! Each function body is a safe Rust fn over [`Args`]; the per-worker state (event slots,
//! recorded actions) lives in the worker's thread-local context (one interpreter per thread).
//! The `siphon` Python package (scripting/python/siphon/) is the user-facing layer on top.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3_ffi as ffi;

use crate::event::{Actions, Disposition, ForkStrategy, ForkTarget, Remote, Transport};
use crate::http::{http_config_json, http_request, http_respond, http_set_routes, http_started};
use crate::message::addr_uri;
use crate::presence::{self, PresenceError, PublishRequest};
use crate::py::{Args, PyErrSpec, PyResult, Ret, finish, str_obj};
use crate::shared::{DigestCheck, DigestMode, MetricKind, MetricOp, SaveOutcome};
use crate::smpp::{smpp_answer, smpp_config_json, smpp_send, smpp_send_via};
use crate::worker::{LogLevel, with_ctx};

macro_rules! fastcall {
    ($($shim:ident => $body:ident,)*) => {
        $(
            unsafe extern "C" fn $shim(
                _m: *mut ffi::PyObject,
                args: *mut *mut ffi::PyObject,
                n: ffi::Py_ssize_t,
            ) -> *mut ffi::PyObject {
                // SAFETY: CPython calls METH_FASTCALL functions with `n` valid borrowed
                // arguments, on a thread holding the GIL of the calling interpreter.
                let a = unsafe { Args::new(args, n) };
                finish($body(&a))
            }
        )*
        const FUNCS: &[(&std::ffi::CStr, ffi::PyCFunctionFast)] = &[
            $( (
                // SAFETY: the literal has exactly one trailing NUL and no interior NUL.
                unsafe { std::ffi::CStr::from_bytes_with_nul_unchecked(concat!(stringify!($body), "\0").as_bytes()) },
                $shim,
            ), )*
        ];
    };
}

fastcall! {
    s_smpp_answer => smpp_answer,
    s_smpp_send => smpp_send,
    s_smpp_send_via => smpp_send_via,
    s_smpp_config_json => smpp_config_json,
    s_http_request => http_request,
    s_http_respond => http_respond,
    s_http_config_json => http_config_json,
    s_http_set_routes => http_set_routes,
    s_http_started => http_started,
    s_log => log,
    s_worker_id => worker_id,
    s_ev_id => ev_id,
    s_ev_core => ev_core,
    s_hdr => hdr,
    s_hdrs => hdrs,
    s_hdr_tag => hdr_tag,
    s_set_hdr => set_hdr,
    s_add_hdr => add_hdr,
    s_prepend_hdr => prepend_hdr,
    s_rm_hdr => rm_hdr,
    s_rm_hdrs_prefix => rm_hdrs_prefix,
    s_start => start,
    s_set_ruri => set_ruri,
    s_body => body,
    s_set_body => set_body,
    s_meta => meta,
    s_reply => reply,
    s_relay => relay,
    s_fork => fork,
    s_record_route => record_route,
    s_reply_hdr => reply_hdr,
    s_reply_body => reply_body,
    s_reply_to_tag => reply_to_tag,
    s_fwd_reply => fwd_reply,
    s_reject_reply => reject_reply,
    s_script_error => script_error,
    s_set_auth_user => set_auth_user,
    s_auth_user => auth_user,
    s_has_action => has_action,
    s_done => done,
    s_reg_save => reg_save,
    s_reg_lookup => reg_lookup,
    s_reg_remove => reg_remove,
    s_reg_expire => reg_expire,
    s_reg_count => reg_count,
    s_auth_digest => auth_digest,
    s_auth_nonce => auth_nonce,
    s_auth_validate => auth_validate,
    s_cache_fetch => cache_fetch,
    s_cache_store => cache_store,
    s_cache_delete => cache_delete,
    s_cache_exists => cache_exists,
    s_cache_expire => cache_expire,
    s_cache_has => cache_has,
    s_list_push => list_push,
    s_list_pop_all => list_pop_all,
    s_list_len => list_len,
    s_timer_start => timer_start,
    s_metric_decl => metric_decl,
    s_metric_op => metric_op,
    s_config_json => config_json,
    s_local_domains => local_domains,
    s_local_addrs => local_addrs,
    s_include_paths => include_paths,
    s_rate_limit => rate_limit,
    s_send_request => send_request,
    s_sanity => sanity,
    s_pres_publish => pres_publish,
    s_pres_lookup => pres_lookup,
    s_pres_subscribe => pres_subscribe,
    s_pres_subscribe_dialog => pres_subscribe_dialog,
    s_pres_unsubscribe => pres_unsubscribe,
    s_pres_refresh => pres_refresh,
    s_pres_find => pres_find,
    s_pres_subscribers => pres_subscribers,
    s_pres_counts => pres_counts,
    s_pres_expire => pres_expire,
    s_pres_notify => pres_notify,
    s_pres_agent => pres_agent,
}

fn handle(a: &Args<'_>) -> PyResult<u64> {
    a.int(0).map(|h| h as u64)
}

fn which(a: &Args<'_>) -> PyResult<bool> {
    a.int(1).map(|w| w != 0)
}

fn log(a: &Args<'_>) -> PyResult<Ret> {
    let level = LogLevel::from_int(a.int(0)?);
    let msg = a.str(1)?;
    with_ctx(|c| {
        c.log(level, msg);
        Ok(Ret::None)
    })
}

fn worker_id(_a: &Args<'_>) -> PyResult<Ret> {
    with_ctx(|c| Ok(Ret::Int(c.worker as i64)))
}

fn ev_id(a: &Args<'_>) -> PyResult<Ret> {
    let h = handle(a)?;
    with_ctx(|c| Ok(Ret::Int(c.slot(h)?.ev.id as i64)))
}

fn ev_core(a: &Args<'_>) -> PyResult<Ret> {
    let h = handle(a)?;
    with_ctx(|c| Ok(Ret::Int(c.slot(h)?.ev.core as i64)))
}

fn hdr(a: &Args<'_>) -> PyResult<Ret> {
    let (h, w, name) = (handle(a)?, which(a)?, a.str(2)?);
    with_ctx(|c| match c.slot(h)?.msg(w)?.header(name) {
        Some(v) => str_obj(v),
        None => Ok(Ret::None),
    })
}

/// `hdr_tag(h, w, name)`: the `tag` parameter of a name-addr header (`From`, `To`) as
/// `siphon._message._param(value, "tag")` reads it (one call instead of a header copy and a
/// Python parse per `to_tag`/`in_dialog`); None without the header or the parameter.
fn hdr_tag(a: &Args<'_>) -> PyResult<Ret> {
    let (h, w, name) = (handle(a)?, which(a)?, a.str(2)?);
    with_ctx(
        |c| match c.slot(h)?.msg(w)?.header(name).and_then(tag_param) {
            Some(t) => str_obj(t),
            None => Ok(Ret::None),
        },
    )
}

/// Python's `str.isspace` (what `str.strip()` removes): Unicode White_Space plus the four
/// information separators U+001C..U+001F.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `_param(v, "tag")` of siphon/_message.py: the parameters after the last `>` (or after the
/// first `;` when there is no `>`), split on `;`; the first whose name, stripped and lowered,
/// is `tag` gives its stripped value (empty without `=`). No non-ASCII character lowers to
/// `t`, `a` or `g`, so an ASCII case-insensitive comparison is the same test.
fn tag_param(v: &str) -> Option<&str> {
    let tail = match v.rfind('>') {
        Some(b) => &v[b + 1..],
        None => v.split_once(';').map_or("", |(_, t)| t),
    };
    tail.split(';').find_map(|p| {
        let (k, val) = p.split_once('=').unwrap_or((p, ""));
        k.trim_matches(py_space)
            .eq_ignore_ascii_case("tag")
            .then(|| val.trim_matches(py_space))
    })
}

fn hdrs(a: &Args<'_>) -> PyResult<Ret> {
    let (h, w, name) = (handle(a)?, which(a)?, a.str(2)?);
    with_ctx(|c| {
        let m = c.slot(h)?.msg(w)?;
        m.header_all(name)
            .map(str_obj)
            .collect::<PyResult<_>>()
            .map(Ret::List)
    })
}

fn set_hdr(a: &Args<'_>) -> PyResult<Ret> {
    let (h, w, name, value) = (handle(a)?, which(a)?, a.str(2)?, a.str(3)?);
    with_ctx(|c| {
        c.slot(h)?.msg_mut(w)?.set_header(name, value);
        Ok(Ret::None)
    })
}

fn add_hdr(a: &Args<'_>) -> PyResult<Ret> {
    let (h, w, name, value) = (handle(a)?, which(a)?, a.str(2)?, a.str(3)?);
    with_ctx(|c| {
        c.slot(h)?.msg_mut(w)?.add_header(name, value);
        Ok(Ret::None)
    })
}

fn prepend_hdr(a: &Args<'_>) -> PyResult<Ret> {
    let (h, w, name, value) = (handle(a)?, which(a)?, a.str(2)?, a.str(3)?);
    with_ctx(|c| {
        c.slot(h)?.msg_mut(w)?.prepend_header(name, value);
        Ok(Ret::None)
    })
}

fn rm_hdr(a: &Args<'_>) -> PyResult<Ret> {
    let (h, w, name) = (handle(a)?, which(a)?, a.str(2)?);
    with_ctx(|c| {
        let s = c.slot(h)?;
        if s.msg(w)?.header(name).is_none() {
            return Ok(Ret::Bool(false));
        }
        Ok(Ret::Bool(s.msg_mut(w)?.remove_header(name)))
    })
}

fn rm_hdrs_prefix(a: &Args<'_>) -> PyResult<Ret> {
    let (h, w, prefix) = (handle(a)?, which(a)?, a.str(2)?.to_ascii_lowercase());
    with_ctx(|c| {
        let s = c.slot(h)?;
        let any = s
            .msg(w)?
            .headers()
            .any(|(n, _)| n.to_ascii_lowercase().starts_with(&prefix));
        if !any {
            return Ok(Ret::Int(0));
        }
        Ok(Ret::Int(s.msg_mut(w)?.remove_prefix(&prefix) as i64))
    })
}

fn start(a: &Args<'_>) -> PyResult<Ret> {
    let (h, w) = (handle(a)?, which(a)?);
    with_ctx(|c| {
        let m = c.slot(h)?.msg(w)?;
        Ok(match m.status() {
            0 => Ret::Tuple(vec![str_obj(m.method())?, str_obj(m.ruri())?]),
            status => Ret::Tuple(vec![Ret::Int(i64::from(status)), str_obj(m.reason())?]),
        })
    })
}

fn set_ruri(a: &Args<'_>) -> PyResult<Ret> {
    let (h, uri) = (handle(a)?, a.str(1)?);
    with_ctx(|c| {
        c.slot(h)?.msg_mut(false)?.set_ruri(uri);
        Ok(Ret::None)
    })
}

fn body(a: &Args<'_>) -> PyResult<Ret> {
    let (h, w) = (handle(a)?, which(a)?);
    with_ctx(|c| {
        let m = c.slot(h)?.msg(w)?;
        Ok(if m.body().is_empty() {
            Ret::None
        } else {
            Ret::Bytes(m.body().to_vec())
        })
    })
}

fn set_body(a: &Args<'_>) -> PyResult<Ret> {
    let (h, w, body, ct) = (handle(a)?, which(a)?, a.bytes(2)?, a.opt_str(3)?);
    with_ctx(|c| {
        let m = c.slot(h)?.msg_mut(w)?;
        m.set_body(body);
        if let Some(ct) = ct {
            m.set_header("Content-Type", ct);
        }
        Ok(Ret::None)
    })
}

fn meta(a: &Args<'_>) -> PyResult<Ret> {
    let h = handle(a)?;
    with_ctx(|c| {
        let m = &c.slot(h)?.ev.meta;
        Ok(Ret::Tuple(vec![
            Ret::Str(m.transport.to_owned()),
            Ret::Str(m.source.ip().to_string()),
            Ret::Int(i64::from(m.source.port())),
        ]))
    })
}

fn reply(a: &Args<'_>) -> PyResult<Ret> {
    let (h, code, reason, reliable) = (handle(a)?, a.int(1)?, a.str(2)?, a.truthy(3)?);
    if !(100..=699).contains(&code) {
        return Err(PyErrSpec::Value(format!("status code {code} out of range")));
    }
    with_ctx(|c| {
        let s = c.slot(h)?;
        if s.presence_verdict {
            // The compositor/notifier already answered this request (presence.publish on a
            // PUBLISH it refused with 412/489/423/503): its answer stands (RFC 3903 §6).
            return Ok(Ret::None);
        }
        // Keep reply headers/body/To tag shaped earlier (set_reply_header before reply()).
        let (headers, body, to_tag) = match std::mem::take(&mut s.act.disposition) {
            Disposition::Reply {
                headers,
                body,
                to_tag,
                ..
            } => (headers, body, to_tag),
            _ => (
                std::mem::take(&mut s.pending_reply_headers),
                s.pending_reply_body.take(),
                s.pending_to_tag.take(),
            ),
        };
        s.act.disposition = Disposition::Reply {
            status: code as u16,
            reason: reason.to_owned(),
            headers,
            body,
            reliable,
            to_tag,
        };
        Ok(Ret::None)
    })
}

/// A flow given as (transport name, `ip:port`) (`Flow.transport`, `Flow.remote_addr`).
fn flow_arg(a: &Args<'_>, i: usize) -> PyResult<Option<Remote>> {
    let (Some(transport), Some(remote)) = (a.opt_str(i)?, a.opt_str(i + 1)?) else {
        return Ok(None);
    };
    let transport = match transport.to_ascii_lowercase().as_str() {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        "tls" => Transport::Tls,
        "sctp" => Transport::Sctp,
        "ws" => Transport::Ws,
        "wss" => Transport::Wss,
        other => {
            return Err(PyErrSpec::Value(format!(
                "unknown flow transport {other:?}"
            )));
        }
    };
    let addr = remote
        .parse()
        .map_err(|_| PyErrSpec::Value(format!("bad flow address {remote:?}")))?;
    Ok(Some(Remote { addr, transport }))
}

fn relay(a: &Args<'_>) -> PyResult<Ret> {
    let (h, hop) = (handle(a)?, a.opt_str(1)?);
    let (on_reply, on_failure) = (a.truthy(2)?, a.truthy(3)?);
    let flow = flow_arg(a, 4)?;
    with_ctx(|c| {
        c.slot(h)?.act.disposition = Disposition::Relay {
            next_hop: hop.map(str::to_owned),
            has_on_reply: on_reply,
            has_on_failure: on_failure,
            flow,
        };
        Ok(Ret::None)
    })
}

/// `fork(h, targets, strategy)`: each target is a URI string, or `(uri, path, transport,
/// remote)` for a registered `Contact` with a Path or a flow (one call for the whole fork).
fn fork(a: &Args<'_>) -> PyResult<Ret> {
    let (h, strategy) = (handle(a)?, a.str(2)?);
    let strategy = match strategy {
        "parallel" => ForkStrategy::Parallel,
        "sequential" => ForkStrategy::Sequential,
        other => return Err(PyErrSpec::Value(format!("unknown fork strategy {other:?}"))),
    };
    let targets = a.seq(1, |item| {
        // SAFETY: GIL held; `item` is a valid object kept alive by the sequence.
        if unsafe { ffi::PyTuple_CheckExact(item) } != 0 {
            // SAFETY: an exact tuple: its item array holds PyTuple_GET_SIZE valid references.
            let t = unsafe { Args::tuple(item) };
            Ok(ForkTarget {
                uri: t.str(0)?.to_owned(),
                routes: t.str_list(1)?,
                flow: flow_arg(&t, 2)?,
            })
        } else {
            let one = [item];
            // SAFETY: one valid borrowed object.
            let t = unsafe { Args::new(one.as_ptr(), 1) };
            Ok(ForkTarget::uri(t.str(0)?))
        }
    })?;
    if targets.is_empty() {
        return Err(PyErrSpec::Value("fork needs at least one target".into()));
    }
    with_ctx(|c| {
        c.slot(h)?.act.disposition = Disposition::Fork { targets, strategy };
        Ok(Ret::None)
    })
}

fn record_route(a: &Args<'_>) -> PyResult<Ret> {
    let h = handle(a)?;
    with_ctx(|c| {
        c.slot(h)?.act.record_route = true;
        Ok(Ret::None)
    })
}

fn reply_hdr(a: &Args<'_>) -> PyResult<Ret> {
    let (h, name, value, add) = (handle(a)?, a.str(1)?, a.str(2)?, a.truthy(3)?);
    with_ctx(|c| {
        let s = c.slot(h)?;
        let headers = match &mut s.act.disposition {
            Disposition::Reply { headers, .. } => headers,
            _ => &mut s.pending_reply_headers,
        };
        if !add {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        }
        headers.push((name.to_owned(), value.to_owned()));
        Ok(Ret::None)
    })
}

fn reply_to_tag(a: &Args<'_>) -> PyResult<Ret> {
    let (h, tag) = (handle(a)?, a.str(1)?);
    with_ctx(|c| {
        let s = c.slot(h)?;
        let v = Some(tag.to_owned());
        match &mut s.act.disposition {
            Disposition::Reply { to_tag, .. } => *to_tag = v,
            _ => s.pending_to_tag = v,
        }
        Ok(Ret::None)
    })
}

fn reply_body(a: &Args<'_>) -> PyResult<Ret> {
    let (h, body, ct) = (handle(a)?, a.bytes(1)?, a.str(2)?);
    with_ctx(|c| {
        let s = c.slot(h)?;
        let v = Some((ct.to_owned(), body));
        match &mut s.act.disposition {
            Disposition::Reply { body: b, .. } => *b = v,
            _ => s.pending_reply_body = v,
        }
        Ok(Ret::None)
    })
}

fn fwd_reply(a: &Args<'_>) -> PyResult<Ret> {
    let h = handle(a)?;
    with_ctx(|c| {
        c.slot(h)?.act.disposition = Disposition::ForwardReply;
        Ok(Ret::None)
    })
}

fn reject_reply(a: &Args<'_>) -> PyResult<Ret> {
    let (h, code, reason) = (handle(a)?, a.int(1)?, a.str(2)?);
    with_ctx(|c| {
        let s = c.slot(h)?;
        let provisional = s.ev.reply.as_ref().is_some_and(|r| r.status() < 200);
        if provisional && (300..=699).contains(&code) {
            s.act.disposition = Disposition::RejectReply {
                status: code as u16,
                reason: reason.to_owned(),
            };
        }
        Ok(Ret::Bool(provisional))
    })
}

fn script_error(a: &Args<'_>) -> PyResult<Ret> {
    let (h, tb) = (handle(a)?, a.str(1)?);
    with_ctx(|c| {
        c.script_error(h, tb)?;
        Ok(Ret::None)
    })
}

fn set_auth_user(a: &Args<'_>) -> PyResult<Ret> {
    let (h, user) = (handle(a)?, a.opt_str(1)?);
    with_ctx(|c| {
        c.slot(h)?.act.auth_user = user.map(str::to_owned);
        Ok(Ret::None)
    })
}

fn auth_user(a: &Args<'_>) -> PyResult<Ret> {
    let h = handle(a)?;
    with_ctx(|c| Ok(c.slot(h)?.act.auth_user.clone().into()))
}

fn has_action(a: &Args<'_>) -> PyResult<Ret> {
    let h = handle(a)?;
    with_ctx(|c| Ok(Ret::Bool(c.slot(h)?.act.disposition != Disposition::Drop)))
}

fn done(a: &Args<'_>) -> PyResult<Ret> {
    let h = handle(a)?;
    with_ctx(|c| {
        c.async_inflight = c.async_inflight.saturating_sub(1);
        c.complete(h)?;
        Ok(Ret::None)
    })
}

fn reg_save(a: &Args<'_>) -> PyResult<Ret> {
    let h = handle(a)?;
    with_ctx(|c| {
        let shared = Arc::clone(&c.shared);
        let s = c.slot(h)?;
        let meta = s.ev.meta;
        let out = shared.registrar.save(
            &s.ev.request,
            meta.source,
            meta.transport,
            s.act.auth_user.as_deref(),
        );
        Ok(match out {
            SaveOutcome::Ok {
                aor,
                events,
                headers,
            } => {
                // Durable/shared backend: the 200 waits for the write (worker.rs holds it).
                s.durable = shared.registrar.commits().map(|c| c.ticket());
                s.act.disposition = Disposition::Reply {
                    status: 200,
                    reason: "OK".into(),
                    headers,
                    body: None,
                    reliable: false,
                    to_tag: None,
                };
                let events = events
                    .into_iter()
                    .map(|(aor, kind)| Ret::Tuple(vec![Ret::Str(aor), Ret::Str(kind.to_owned())]))
                    .collect();
                Ret::Tuple(vec![Ret::Bool(true), Ret::Str(aor), Ret::List(events)])
            }
            SaveOutcome::Reject {
                status,
                reason,
                headers,
            } => {
                let mut d = Actions::reply(status, reason);
                if let Disposition::Reply { headers: h, .. } = &mut d {
                    *h = headers;
                }
                s.act.disposition = d;
                Ret::Tuple(vec![Ret::Bool(false), Ret::None, Ret::List(Vec::new())])
            }
        })
    })
}

fn reg_lookup(a: &Args<'_>) -> PyResult<Ret> {
    let uri = a.str(0)?;
    with_ctx(|c| {
        let now = std::time::SystemTime::now();
        let list = c.shared.registrar.lookup(uri);
        Ok(Ret::List(
            list.into_iter()
                .map(|b| {
                    let q = b.q.map_or(1.0, |q| f64::from(q.millis()) / 1000.0);
                    let (expires, age) = (b.remaining_secs(now), b.age_secs(now));
                    // The lookup's own copy: its strings move into the tuple.
                    Ret::Tuple(vec![
                        Ret::Str(b.uri),
                        Ret::Float(q),
                        Ret::Int(i64::from(expires)),
                        Ret::Int(age as i64),
                        b.received.into(),
                        Ret::List(b.path.into_iter().map(Ret::Str).collect()),
                        b.instance_id.into(),
                    ])
                })
                .collect(),
        ))
    })
}

fn reg_remove(a: &Args<'_>) -> PyResult<Ret> {
    let uri = a.str(0)?;
    with_ctx(|c| Ok(Ret::Bool(c.shared.registrar.remove(uri))))
}

fn reg_expire(a: &Args<'_>) -> PyResult<Ret> {
    let uri = a.str(0)?;
    with_ctx(|c| Ok(Ret::Bool(c.shared.registrar.expire(uri))))
}

fn reg_count(_a: &Args<'_>) -> PyResult<Ret> {
    with_ctx(|c| Ok(Ret::Int(c.shared.registrar.aor_count() as i64)))
}

/// `auth_digest(h, mode, realm, password, ha1)`: mode 0 = www (401), 1 = proxy (407),
/// 2 = verify only (no challenge, no auth_user).
fn auth_digest(a: &Args<'_>) -> PyResult<Ret> {
    let (h, mode) = (handle(a)?, a.int(1)?);
    let (realm, password, ha1) = (a.opt_str(2)?, a.opt_str(3)?, a.opt_str(4)?);
    with_ctx(|c| {
        let shared = Arc::clone(&c.shared);
        let s = c.slot(h)?;
        let dm = if mode == 1 {
            DigestMode::Proxy
        } else {
            DigestMode::Www
        };
        let transport = s.ev.meta.transport;
        let checked = shared
            .auth
            .check(&s.ev.request, transport, dm, realm, password, ha1);
        if let Some(observe) = &shared.cfg.auth_observer {
            let accepted = matches!(checked, DigestCheck::Ok(_));
            if accepted || matches!(checked, DigestCheck::Challenge { failed: true, .. }) {
                let meta = &s.ev.meta;
                observe(meta.source, meta.transport != "udp", accepted);
            }
        }
        match checked {
            DigestCheck::Ok(user) => {
                if mode != 2 {
                    s.act.auth_user = Some(user);
                }
                Ok(Ret::Bool(true))
            }
            DigestCheck::Challenge {
                status,
                reason,
                headers,
                ..
            } => {
                if mode != 2 {
                    let mut d = Actions::reply(status, reason);
                    if let Disposition::Reply { headers: h, .. } = &mut d {
                        *h = headers;
                    }
                    s.act.disposition = d;
                }
                Ok(Ret::Bool(false))
            }
        }
    })
}

fn auth_nonce(_a: &Args<'_>) -> PyResult<Ret> {
    with_ctx(|c| Ok(Ret::Str(c.shared.auth.nonce())))
}

fn auth_validate(a: &Args<'_>) -> PyResult<Ret> {
    let n = a.str(0)?;
    with_ctx(|c| Ok(Ret::Bool(c.shared.auth.validate_nonce(n))))
}

fn cache_fetch(a: &Args<'_>) -> PyResult<Ret> {
    let (n, k) = (a.str(0)?, a.str(1)?);
    with_ctx(|c| Ok(c.shared.cache.fetch(n, k).into()))
}

/// The longest delay, TTL or window a script may ask for (a year).
const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

/// A script-supplied number of seconds: finite, not negative, at most [`MAX_SECONDS`]; anything
/// else is a ValueError (never a panic: `Duration::from_secs_f64(inf)` would abort the node).
fn seconds(v: f64, what: &str) -> PyResult<Duration> {
    if v.is_finite() && (0.0..=MAX_SECONDS).contains(&v) {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(PyErrSpec::Value(format!(
            "{what} must be between 0 and {MAX_SECONDS} seconds, got {v}"
        )))
    }
}

fn cache_store(a: &Args<'_>) -> PyResult<Ret> {
    let (n, k, v, ttl) = (a.str(0)?, a.str(1)?, a.str(2)?, a.opt_float(3)?);
    if let Some(t) = ttl {
        seconds(t, "cache ttl")?;
    }
    with_ctx(|c| {
        c.shared.cache.store(n, k, v, ttl);
        Ok(Ret::None)
    })
}

fn cache_delete(a: &Args<'_>) -> PyResult<Ret> {
    let (n, k) = (a.str(0)?, a.str(1)?);
    with_ctx(|c| Ok(Ret::Bool(c.shared.cache.delete(n, k))))
}

fn cache_exists(a: &Args<'_>) -> PyResult<Ret> {
    let (n, k) = (a.str(0)?, a.str(1)?);
    with_ctx(|c| Ok(Ret::Bool(c.shared.cache.exists(n, k))))
}

fn cache_expire(a: &Args<'_>) -> PyResult<Ret> {
    let (n, k, t) = (a.str(0)?, a.str(1)?, a.float(2)?);
    seconds(t, "cache ttl")?;
    with_ctx(|c| Ok(Ret::Bool(c.shared.cache.expire(n, k, t))))
}

fn cache_has(a: &Args<'_>) -> PyResult<Ret> {
    let n = a.str(0)?;
    with_ctx(|c| Ok(Ret::Bool(c.shared.cache.has(n))))
}

fn list_push(a: &Args<'_>) -> PyResult<Ret> {
    let (n, k, v) = (a.str(0)?, a.str(1)?, a.str(2)?);
    with_ctx(|c| Ok(Ret::Int(c.shared.cache.list_push(n, k, v) as i64)))
}

fn list_pop_all(a: &Args<'_>) -> PyResult<Ret> {
    let (n, k) = (a.str(0)?, a.str(1)?);
    with_ctx(|c| {
        Ok(Ret::List(
            c.shared
                .cache
                .list_pop_all(n, k)
                .into_iter()
                .map(Ret::Str)
                .collect(),
        ))
    })
}

fn list_len(a: &Args<'_>) -> PyResult<Ret> {
    let (n, k) = (a.str(0)?, a.str(1)?);
    with_ctx(|c| Ok(Ret::Int(c.shared.cache.list_len(n, k) as i64)))
}

fn timer_start(a: &Args<'_>) -> PyResult<Ret> {
    let (token, ms) = (a.int(0)?, a.float(1)?);
    let d = seconds(ms / 1000.0, "timer delay")?;
    with_ctx(|c| {
        let cap = c.shared.cfg.limits.timers;
        if !c.shared.timers.schedule(c.worker, token as u64, d, cap) {
            c.shared
                .limit_hits
                .timers
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(PyErrSpec::Runtime(format!(
                "too many pending timers (limits.max_script_timers = {cap})"
            )));
        }
        Ok(Ret::None)
    })
}

fn metric_decl(a: &Args<'_>) -> PyResult<Ret> {
    let kind = match a.str(0)? {
        "counter" => MetricKind::Counter,
        "gauge" => MetricKind::Gauge,
        "histogram" => MetricKind::Histogram,
        k => return Err(PyErrSpec::Value(format!("unknown metric kind {k:?}"))),
    };
    let (name, help, labels) = (a.str(1)?, a.str(2)?, a.str_list(3)?);
    let buckets = if a.is_none(4) {
        None
    } else {
        let raw = a.str_list(4)?;
        Some(
            raw.iter()
                .map(|s| s.parse::<f64>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| PyErrSpec::Value("bad bucket".into()))?,
        )
    };
    with_ctx(|c| {
        c.shared.metrics.declare(kind, name, help, labels, buckets);
        Ok(Ret::None)
    })
}

fn metric_op(a: &Args<'_>) -> PyResult<Ret> {
    let (name, labels, op, v) = (a.str(0)?, a.str_list(1)?, a.int(2)?, a.float(3)?);
    let op = match op {
        0 => MetricOp::Add,
        1 => MetricOp::Set,
        _ => MetricOp::Observe,
    };
    with_ctx(|c| Ok(Ret::Bool(c.shared.metrics.apply(name, labels, op, v))))
}

fn config_json(_a: &Args<'_>) -> PyResult<Ret> {
    with_ctx(|c| Ok(Ret::Str(c.shared.cfg.script_config.to_string())))
}

fn local_addrs(_a: &Args<'_>) -> PyResult<Ret> {
    with_ctx(|c| {
        Ok(Ret::List(
            c.shared
                .cfg
                .local_addrs
                .iter()
                .cloned()
                .map(Ret::Str)
                .collect(),
        ))
    })
}

fn local_domains(_a: &Args<'_>) -> PyResult<Ret> {
    with_ctx(|c| {
        Ok(Ret::List(
            c.shared
                .cfg
                .local_domains
                .iter()
                .cloned()
                .map(Ret::Str)
                .collect(),
        ))
    })
}

fn include_paths(_a: &Args<'_>) -> PyResult<Ret> {
    with_ctx(|c| {
        Ok(Ret::List(
            c.shared
                .cfg
                .include_paths
                .iter()
                .map(|p| Ret::Str(p.to_string_lossy().into_owned()))
                .collect(),
        ))
    })
}

/// `send_request(method, ruri, [(name, value)], body|None, next_hop|None, wait, timeout_ms)`
/// -> token. The node picks it up with `HostHandle::poll_outbound`.
fn send_request(a: &Args<'_>) -> PyResult<Ret> {
    let (method, ruri) = (a.str(0)?, a.str(1)?);
    let flat = a.str_list(2)?;
    if flat.len() % 2 != 0 {
        return Err(PyErrSpec::Value("headers must be name/value pairs".into()));
    }
    let headers = flat
        .chunks(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect();
    let body = if a.is_none(3) {
        None
    } else {
        Some(a.bytes(3)?)
    };
    let (next_hop, wait, timeout) = (a.opt_str(4)?, a.truthy(5)?, a.int(6)?);
    with_ctx(|c| {
        let token = c
            .shared
            .next_token
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        c.shared.outbound.push(crate::event::OutboundRequest {
            token,
            worker: c.worker,
            method: method.to_owned(),
            ruri: ruri.to_owned(),
            headers,
            body,
            next_hop: next_hop.map(str::to_owned),
            wait_for_response: wait,
            timeout_ms: timeout.max(0) as u64,
        });
        if let Some(d) = &c.shared.cfg.doorbell {
            d(usize::MAX);
        }
        Ok(Ret::Int(token as i64))
    })
}

fn rate_limit(a: &Args<'_>) -> PyResult<Ret> {
    let (key, window, max) = (a.str(0)?, a.float(1)?, a.int(2)?);
    let window = seconds(window, "rate_limit window_secs")?;
    with_ctx(|c| {
        let ok = c.shared.rate.allow(key, window, max.max(0) as u32);
        Ok(Ret::Bool(ok))
    })
}

/// `proxy.sanity_check`: mandatory headers, Max-Forwards > 0, CSeq method matches,
/// Content-Length matches the body when present (RFC 3261 §8.1.1, §16.3).
fn sanity(a: &Args<'_>) -> PyResult<Ret> {
    let h = handle(a)?;
    with_ctx(|c| {
        let m = &c.slot(h)?.ev.request;
        let mandatory = ["To", "From", "Call-ID", "CSeq", "Via"]
            .iter()
            .all(|n| m.header(n).is_some());
        let mf_ok = m
            .header("Max-Forwards")
            .is_none_or(|v| v.trim().parse::<u32>().is_ok_and(|n| n > 0));
        let cseq_ok = m.cseq().is_some_and(|(_, meth)| meth == m.method());
        let cl_ok = m
            .header("Content-Length")
            .is_none_or(|v| v.trim().parse::<usize>() == Ok(m.body().len()));
        Ok(Ret::Bool(mandatory && mf_ok && cseq_ok && cl_ok))
    })
}

// ---- presence (presence.rs): RFC 3903 compositor, RFC 6665/3856 notifier ----------------

/// A script-supplied expiry in whole seconds (0 ..= a year).
fn expiry(v: i64, what: &str) -> PyResult<u32> {
    u32::try_from(v)
        .ok()
        .filter(|s| f64::from(*s) <= MAX_SECONDS)
        .ok_or_else(|| {
            PyErrSpec::Value(format!(
                "{what} must be 0 to {MAX_SECONDS} seconds, got {v}"
            ))
        })
}

/// A slot's answer from a presence refusal.
fn presence_refusal(e: &PresenceError) -> Disposition {
    let (status, reason, headers) = e.answer();
    let mut d = Actions::reply(status, reason);
    if let Disposition::Reply { headers: h, .. } = &mut d {
        *h = headers;
    }
    d
}

/// Split a header value list on commas outside `<…>` and quotes (Record-Route, Route).
fn split_list(v: &str) -> Vec<String> {
    let (mut out, mut cur, mut angle, mut quote) = (Vec::new(), String::new(), false, false);
    for ch in v.chars() {
        match ch {
            '"' if !angle => quote = !quote,
            '<' if !quote => angle = true,
            '>' if !quote => angle = false,
            ',' if !angle && !quote => {
                if !cur.trim().is_empty() {
                    out.push(cur.trim().to_owned());
                }
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_owned());
    }
    out
}

/// Queue NOTIFYs after the event `h`'s answer when called from a live event, else on the
/// node's outbound queue.
fn queue_notifies(c: &mut crate::worker::WorkerCtx, h: i64, notifies: Vec<presence::Notify>) {
    let shared = Arc::clone(&c.shared);
    let reqs: Vec<_> = notifies
        .into_iter()
        .map(|n| shared.notify_request(n))
        .collect();
    if reqs.is_empty() {
        return;
    }
    match u64::try_from(h).ok().and_then(|h| c.slot(h).ok()) {
        Some(s) => s.act.outbound.extend(reqs),
        None => {
            for r in reqs {
                shared.outbound.push(r);
            }
            if let Some(d) = &shared.cfg.doorbell {
                d(usize::MAX);
            }
        }
    }
}

/// `pres_publish(h, entity, body, expires)` -> etag. Called from the handler of a PUBLISH
/// whose Request-URI is `entity`, the request's own Event, SIP-If-Match, Expires and
/// Content-Type drive RFC 3903 (refresh, modify, remove; 412/489/423/503 armed as its answer,
/// "" returned), and the 2xx gets SIP-ETag and Expires. Otherwise a new publication.
fn pres_publish(a: &Args<'_>) -> PyResult<Ret> {
    let (h, entity, body, exp) = (a.int(0)?, a.str(1)?, a.str(2)?, a.int(3)?);
    let exp = expiry(exp, "expires")?;
    with_ctx(|c| {
        let shared = Arc::clone(&c.shared);
        let now = Instant::now();
        let slot = u64::try_from(h).ok().and_then(|h| c.slot(h).ok());
        let on_publish = slot.filter(|s| {
            s.ev.kind == crate::event::EventKind::Request
                && s.ev.request.method() == "PUBLISH"
                && presence::entity_key(s.ev.request.ruri()) == presence::entity_key(entity)
        });
        let Some(s) = on_publish else {
            let min = shared.presence.limits().min_expires;
            let req = PublishRequest {
                entity,
                event: Some(presence::PRESENCE_EVENT),
                if_match: None,
                expires: if exp == 0 { 0 } else { exp.max(min) },
                body: Some(body),
                content_type: Some(presence::PIDF),
            };
            let out = shared
                .presence
                .publish(now, &req)
                .map_err(|e| PyErrSpec::Value(format!("presence.publish: {e}")))?;
            queue_notifies(c, h, out.notifies);
            return Ok(Ret::Str(out.etag));
        };
        let r = &s.ev.request;
        let requested = r
            .header("Expires")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .map_or(exp, |v| v.min(exp));
        let req = PublishRequest {
            entity,
            event: r.header("Event"),
            if_match: r.header("SIP-If-Match"),
            expires: requested,
            body: Some(body),
            content_type: r.header("Content-Type"),
        };
        match shared.presence.publish(now, &req) {
            Ok(out) => {
                let headers = match &mut s.act.disposition {
                    Disposition::Reply { headers, .. } => headers,
                    _ => &mut s.pending_reply_headers,
                };
                headers.retain(|(n, _)| {
                    !n.eq_ignore_ascii_case("SIP-ETag") && !n.eq_ignore_ascii_case("Expires")
                });
                headers.push(("SIP-ETag".into(), out.etag.clone()));
                headers.push(("Expires".into(), out.expires.to_string()));
                queue_notifies(c, h, out.notifies);
                Ok(Ret::Str(out.etag))
            }
            Err(e) => {
                s.act.disposition = presence_refusal(&e);
                s.presence_verdict = true;
                Ok(Ret::Str(String::new()))
            }
        }
    })
}

fn pres_lookup(a: &Args<'_>) -> PyResult<Ret> {
    let entity = a.str(0)?;
    with_ctx(|c| {
        Ok(c.shared
            .presence
            .lookup(Instant::now(), entity)
            .map(|(_, b)| b)
            .into())
    })
}

fn full(e: PresenceError) -> PyErrSpec {
    PyErrSpec::Runtime(format!("presence: {e}"))
}

fn pres_subscribe(a: &Args<'_>) -> PyResult<Ret> {
    let (sub, res, event, exp) = (a.str(0)?, a.str(1)?, a.str(2)?, a.int(3)?);
    let exp = expiry(exp, "expires")?;
    with_ctx(|c| {
        let id = c
            .shared
            .presence
            .add(Instant::now(), sub, res, event, exp, None)
            .map_err(full)?;
        Ok(Ret::Str(id))
    })
}

/// `pres_subscribe_dialog(subscriber, resource, event, expires, call_id, from_tag, to_tag,
/// route_set, local_uri|None, remote_uri|None)`; the URIs default to `resource`.
fn pres_subscribe_dialog(a: &Args<'_>) -> PyResult<Ret> {
    let (sub, res, event, exp) = (a.str(0)?, a.str(1)?, a.str(2)?, a.int(3)?);
    let (call_id, from_tag, to_tag) = (a.str(4)?, a.str(5)?, a.str(6)?);
    let routes = a.str_list(7)?;
    let (local, remote) = (a.opt_str(8)?, a.opt_str(9)?);
    let exp = expiry(exp, "expires")?;
    let uri = |v: Option<&str>| addr_uri(v.unwrap_or(res)).to_owned();
    let dialog = presence::SubDialog {
        call_id: call_id.to_owned(),
        from_tag: from_tag.to_owned(),
        to_tag: to_tag.to_owned(),
        route_set: routes,
        local_uri: uri(local),
        remote_uri: uri(remote),
        cseq: 0,
    };
    with_ctx(|c| {
        let id = c
            .shared
            .presence
            .add(Instant::now(), sub, res, event, exp, Some(dialog))
            .map_err(full)?;
        Ok(Ret::Str(id))
    })
}

fn pres_unsubscribe(a: &Args<'_>) -> PyResult<Ret> {
    let id = a.str(0)?;
    with_ctx(|c| Ok(Ret::Bool(c.shared.presence.remove(id))))
}

fn pres_refresh(a: &Args<'_>) -> PyResult<Ret> {
    let (id, exp) = (a.str(0)?, a.int(1)?);
    let exp = expiry(exp, "expires")?;
    with_ctx(|c| {
        Ok(Ret::Bool(c.shared.presence.refresh(
            Instant::now(),
            id,
            exp,
        )))
    })
}

fn pres_find(a: &Args<'_>) -> PyResult<Ret> {
    let (call_id, tag) = (a.str(0)?, a.str(1)?);
    with_ctx(|c| Ok(c.shared.presence.find_by_dialog(call_id, tag).into()))
}

fn pres_subscribers(a: &Args<'_>) -> PyResult<Ret> {
    let res = a.str(0)?;
    with_ctx(|c| {
        let now = Instant::now();
        Ok(Ret::List(
            c.shared
                .presence
                .subscribers(now, res)
                .into_iter()
                .map(|s| {
                    Ret::Tuple(vec![
                        Ret::Str(s.id.clone()),
                        Ret::Str(s.subscriber.clone()),
                        Ret::Str(s.event.clone()),
                        Ret::Str(s.state.as_str().to_owned()),
                        Ret::Int(s.remaining(now) as i64),
                    ])
                })
                .collect(),
        ))
    })
}

fn pres_counts(_a: &Args<'_>) -> PyResult<Ret> {
    with_ctx(|c| {
        let p = &c.shared.presence;
        Ok(Ret::Tuple(vec![
            Ret::Int(p.subscription_count() as i64),
            Ret::Int(p.document_count(Instant::now()) as i64),
        ]))
    })
}

fn pres_expire(_a: &Args<'_>) -> PyResult<Ret> {
    with_ctx(|c| {
        let out = c.shared.presence.sweep(Instant::now());
        queue_notifies(c, -1, out);
        Ok(Ret::None)
    })
}

/// `pres_notify(h, id, body|None, content_type|None, state)` -> sent. From a live event the
/// NOTIFY follows that event's answer (RFC 6665 §4.2.1: the 2xx before the first NOTIFY).
fn pres_notify(a: &Args<'_>) -> PyResult<Ret> {
    let (h, id, body, ct, state) = (
        a.int(0)?,
        a.str(1)?,
        a.opt_str(2)?,
        a.opt_str(3)?,
        a.str(4)?,
    );
    with_ctx(|c| {
        let p = &c.shared.presence;
        let Some(n) = p.notify(id, body, ct, state, &p.contact()) else {
            return Ok(Ret::Bool(false));
        };
        queue_notifies(c, h, vec![n]);
        Ok(Ret::Bool(true))
    })
}

/// `pres_agent(h)` -> handled. The node is the presence agent (RFC 3856 §6) of every entity
/// its compositor holds state for: an out-of-dialog `SUBSCRIBE` with `Event: presence` for
/// such an entity, and any in-dialog SUBSCRIBE of a presence subscription made here, are
/// answered here (200 with Expires and Contact, then the NOTIFY with the composed PIDF;
/// Expires 0 ends it with `Subscription-State: terminated`). Anything else is the script's.
fn pres_agent(a: &Args<'_>) -> PyResult<Ret> {
    let h = handle(a)?;
    with_ctx(|c| {
        let shared = Arc::clone(&c.shared);
        let p = &shared.presence;
        let now = Instant::now();
        let s = c.slot(h)?;
        let r = Arc::clone(&s.ev.request);
        let is_presence = r.header("Event").is_some_and(|e| {
            e.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(presence::PRESENCE_EVENT))
        });
        if r.method() != "SUBSCRIBE" || !is_presence {
            return Ok(Ret::Bool(false));
        }
        let call_id = r.header("Call-ID").unwrap_or_default();
        let from = r.header("From").unwrap_or_default();
        let to = r.header("To").unwrap_or_default();
        let Some(from_tag) = presence::tag_of(from) else {
            return Ok(Ret::Bool(false));
        };
        let requested = r
            .header("Expires")
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(3600);
        let granted = match p.grant(requested) {
            Ok(g) => g,
            Err(e) => {
                s.act.disposition = presence_refusal(&e);
                s.presence_verdict = true;
                return Ok(Ret::Bool(true));
            }
        };
        let (id, new_tag) = match presence::tag_of(to) {
            Some(tt) => {
                let known = p.find_by_dialog(call_id, from_tag).filter(|id| {
                    p.get(id)
                        .and_then(|s| s.dialog)
                        .is_some_and(|d| d.to_tag == tt)
                });
                match known {
                    Some(id) => (id, None),
                    None => return Ok(Ret::Bool(false)),
                }
            }
            None => {
                if !p.has_state(now, r.ruri()) {
                    return Ok(Ret::Bool(false));
                }
                let Some(contact) = r.header("Contact").map(|v| addr_uri(v).to_owned()) else {
                    s.act.disposition = Actions::reply(400, "Missing Contact");
                    s.presence_verdict = true;
                    return Ok(Ret::Bool(true));
                };
                let accepts = r.header_all("Accept").flat_map(|v| v.split(',')).all(|t| {
                    let t = t.split(';').next().unwrap_or(t).trim().to_ascii_lowercase();
                    !matches!(t.as_str(), "" | "*/*" | "application/*" | presence::PIDF)
                });
                if r.header("Accept").is_some() && accepts {
                    let mut d = Actions::reply(406, "Not Acceptable");
                    if let Disposition::Reply { headers, .. } = &mut d {
                        headers.push(("Accept".into(), presence::PIDF.into()));
                    }
                    s.act.disposition = d;
                    s.presence_verdict = true;
                    return Ok(Ret::Bool(true));
                }
                let tag = format!(
                    "pa{:x}{:x}",
                    shared
                        .next_token
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.subsec_nanos())
                        ^ std::process::id()
                );
                let dialog = presence::SubDialog {
                    call_id: call_id.to_owned(),
                    from_tag: from_tag.to_owned(),
                    to_tag: tag.clone(),
                    route_set: r.header_all("Record-Route").flat_map(split_list).collect(),
                    local_uri: addr_uri(to).to_owned(),
                    remote_uri: addr_uri(from).to_owned(),
                    cseq: 0,
                };
                let resource = presence::entity_key(r.ruri());
                match p.add(
                    now,
                    &contact,
                    &resource,
                    presence::PRESENCE_EVENT,
                    granted,
                    Some(dialog),
                ) {
                    Ok(id) => (id, Some(tag)),
                    Err(e) => {
                        s.act.disposition = presence_refusal(&e);
                        s.presence_verdict = true;
                        return Ok(Ret::Bool(true));
                    }
                }
            }
        };
        s.act.disposition = Disposition::Reply {
            status: 200,
            reason: "OK".into(),
            headers: vec![
                ("Expires".into(), granted.to_string()),
                ("Contact".into(), format!("<{}>", p.contact())),
            ],
            body: None,
            reliable: false,
            to_tag: new_tag,
        };
        s.presence_verdict = true;
        let n: Vec<_> = p.after_subscribe(now, &id, granted).into_iter().collect();
        queue_notifies(c, h as i64, n);
        Ok(Ret::Bool(true))
    })
}

const N_FUNCS: usize = FUNCS.len();

/// The method table, built once (process-global and immutable after first import; CPython
/// only reads it).
static METHODS: std::sync::OnceLock<MethodTable> = std::sync::OnceLock::new();

struct MethodTable(Box<[ffi::PyMethodDef; N_FUNCS + 1]>);
// SAFETY: the table is written once before any interpreter reads it and is immutable after;
// it only holds pointers to 'static C strings and functions.
unsafe impl Send for MethodTable {}
// SAFETY: as above: immutable after construction.
unsafe impl Sync for MethodTable {}

fn method_table() -> *mut ffi::PyMethodDef {
    let t = METHODS.get_or_init(|| {
        let mut defs: [ffi::PyMethodDef; N_FUNCS + 1] =
            std::array::from_fn(|_| ffi::PyMethodDef::zeroed());
        for (d, (name, f)) in defs.iter_mut().zip(FUNCS) {
            *d = ffi::PyMethodDef {
                ml_name: name.as_ptr(),
                ml_meth: ffi::PyMethodDefPointer {
                    PyCFunctionFast: *f,
                },
                ml_flags: ffi::METH_FASTCALL,
                ml_doc: c"".as_ptr(),
            };
        }
        MethodTable(Box::new(defs))
    });
    t.0.as_ptr().cast_mut()
}

#[cfg(Py_3_12)]
static mut SLOTS: [ffi::PyModuleDef_Slot; 2] = [
    ffi::PyModuleDef_Slot {
        slot: ffi::Py_mod_multiple_interpreters,
        value: ffi::Py_MOD_PER_INTERPRETER_GIL_SUPPORTED,
    },
    ffi::PyModuleDef_Slot {
        slot: 0,
        value: std::ptr::null_mut(),
    },
];

#[cfg(not(Py_3_12))]
static mut SLOTS: [ffi::PyModuleDef_Slot; 1] = [ffi::PyModuleDef_Slot {
    slot: 0,
    value: std::ptr::null_mut(),
}];

static mut SIPHON_DEF: ffi::PyModuleDef = ffi::PyModuleDef {
    m_base: ffi::PyModuleDef_HEAD_INIT,
    m_name: c"_siphon".as_ptr(),
    m_doc: c"siphon native API (per-interpreter)".as_ptr(),
    m_size: 0,
    m_methods: std::ptr::null_mut(),
    m_slots: (&raw mut SLOTS).cast(),
    m_traverse: None,
    m_clear: None,
    m_free: None,
};

/// Fill in the method table; called once by `Host::start` before Python is initialised, so
/// no interpreter can be reading the definition concurrently.
pub(crate) fn prepare() {
    let methods = method_table();
    // SAFETY: single-threaded point before Py_InitializeEx (Host::start's STARTED guard); no
    // interpreter exists yet, so nothing reads SIPHON_DEF while it is written.
    unsafe { SIPHON_DEF.m_methods = methods };
}

/// Module init for `PyImport_AppendInittab("_siphon", ...)`.
pub(crate) unsafe extern "C" fn pyinit_siphon() -> *mut ffi::PyObject {
    // SAFETY: CPython's import machinery calls this with the GIL held; SIPHON_DEF is fully
    // initialised by prepare() and lives for the process.
    unsafe { ffi::PyModuleDef_Init(&raw mut SIPHON_DEF) }
}

#[cfg(test)]
mod tests {
    use super::tag_param;

    /// Expected values are what `siphon._message._param(v, "tag")` returns on CPython 3.13.
    #[test]
    fn tag_param_reads_like_the_python_parser() {
        let cases: &[(&str, Option<&str>)] = &[
            ("<sip:bob@127.0.0.1>", None),
            ("<sip:bob@127.0.0.1>;tag=2SIPpTag011", Some("2SIPpTag011")),
            ("sip:a@b;tag=x;foo", Some("x")),
            ("sip:a@b", None),
            ("\"A\" <sip:a@b;tag=inuri>;x=1", None),
            ("<sip:a@b>; TAG = v1 ;tag=v2", Some("v1")),
            ("<sip:a@b>;tag", Some("")),
            ("<sip:a@b>;tag=", Some("")),
            ("<sip:a@b>;\u{1c}tag\u{1c}=\u{1f}z\u{1f}", Some("z")),
            ("<sip:a@b>;tagx=1;tag=2", Some("2")),
            ("a;b;tag=c>d", None),
            ("<sip:a@b>;tag=a=b", Some("a=b")),
            ("x;Tag=\u{a0}q\u{2003}", Some("q")),
            ("<sip:a@b>;t\u{430}g=1", None),
            ("", None),
        ];
        for (v, want) in cases {
            assert_eq!(tag_param(v), *want, "{v:?}");
        }
    }
}
