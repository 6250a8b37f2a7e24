//! SMPP events between a reactor and its script worker (the `siphon.smpp` namespace, inbound
//! side). They travel on the same per-core lanes as SIP events, in a ring pair of their own
//! (the SIP [`crate::Event`] carries a parsed SIP message; an SMPP PDU is plain fields), and
//! wake the same worker and the same doorbell. Plain Rust data only: no Python object crosses.
//!
//! - [`SmppEvent`] (reactor → worker): a bind to decide, a PDU to answer, or a session event.
//! - [`SmppOut`] (worker → reactor): the answer to an event, or a PDU the script sends to a
//!   bound ESME (`deliver_to`, `data_to`, `alert_to`), whose response comes back with
//!   [`crate::HostHandle::complete_smpp`].
//!
//! TLVs cross as their wire octets (tag, length, value, repeated); the Python layer reads and
//! writes that form, and the reactor validates it before it goes on the wire.

use pyo3_ffi as ffi;

use crate::py::{Args, Owned, PyErrSpec, PyResult, Ret, new_str};
use crate::worker::with_ctx;

/// One unit of SMPP work for a script worker.
#[derive(Debug, Clone)]
pub struct SmppEvent {
    /// Caller-chosen id echoed in [`SmppOut::Answer`].
    pub id: u64,
    /// The core that owns the session; the answer goes back to its ring.
    pub core: usize,
    /// `"bind"`, `"pdu"` or `"session"`.
    pub kind: &'static str,
    /// The command (`"bind_transceiver"`, `"submit_sm"`, ...) or the session event
    /// (`"bound"`, `"unbound"`).
    pub command: &'static str,
    /// The session (UUIDv4 text; its first two hex digits are the owning core).
    pub session_id: String,
    /// The ESME's system_id (empty before the bind).
    pub system_id: String,
    /// `ip:port` of the ESME.
    pub client_addr: String,
    /// PDU fields by name; `"tlvs"` holds the TLV section's wire octets.
    pub fields: Vec<(&'static str, SmppValue)>,
}

/// A field value of an [`SmppEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmppValue {
    /// An integer field (TON, NPI, flags, data_coding, ...).
    Int(i64),
    /// A text field (addresses, ids), lossily decoded.
    Str(String),
    /// Octets (short_message, TLV section).
    Bytes(Vec<u8>),
    /// A list of addresses (submit_multi destinations).
    List(Vec<String>),
}

/// The answer the script decided for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmppAnswer {
    /// The [`SmppEvent::id`].
    pub id: u64,
    /// The [`SmppEvent::core`].
    pub core: usize,
    /// command_status.
    pub status: u32,
    /// message_id for the `_resp` (always encoded where the PDU has the field).
    pub message_id: String,
    /// query_sm_resp: (message_state, final_date, error_code).
    pub query: Option<(u8, String, u8)>,
    /// TLV wire octets for data_sm_resp.
    pub tlvs: Vec<u8>,
    /// The handler raised (counted).
    pub error: bool,
}

/// A PDU the script sends towards a bound ESME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmppSend {
    /// Core that owns the session.
    pub core: usize,
    /// Worker awaiting the response.
    pub worker: usize,
    /// Token to complete with.
    pub token: u64,
    /// Target session.
    pub session_id: String,
    /// `"deliver_sm"`, `"data_sm"` or `"alert_notification"`.
    pub command: String,
    /// source_addr (alert: source_addr).
    pub source_addr: String,
    /// destination_addr (alert: esme_addr).
    pub destination_addr: String,
    /// short_message.
    pub short_message: Vec<u8>,
    /// [source_ton, source_npi, dest_ton, dest_npi, esm_class, protocol_id, priority_flag,
    /// registered_delivery, data_coding].
    pub octets: [u8; 9],
    /// service_type.
    pub service_type: String,
    /// TLV wire octets.
    pub tlvs: Vec<u8>,
    /// Set for a send through an outbound bind (`submit_via`, ...): `session_id` is then
    /// the bind's name and the request goes to the core that owns it ([`bind_owner`]).
    pub via: Option<Box<SmppVia>>,
}

/// The fields of a `*_via` send beyond [`SmppSend`]'s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SmppVia {
    /// cancel_sm / query_sm / replace_sm: the SMSC's message_id.
    pub message_id: String,
    /// submit_sm_multi: SME addresses.
    pub destinations: Vec<String>,
    /// schedule_delivery_time.
    pub schedule_delivery_time: String,
    /// validity_period.
    pub validity_period: String,
    /// replace_if_present_flag.
    pub replace_if_present_flag: u8,
    /// sm_default_msg_id.
    pub sm_default_msg_id: u8,
    /// `submit_via(..., store=True, esme=...)`: store-and-forward, with the system_id of the
    /// ESME its receipt goes back to (empty: none).
    pub store: Option<String>,
}

/// The core that owns the outbound bind `name` among `cores` (FNV-1a of the name): every
/// core computes the same owner, so a `*_via` send from any core reaches it through its ring.
pub fn bind_owner(name: &str, cores: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    usize::try_from(h % cores.max(1) as u64).unwrap_or(0)
}

/// Worker → reactor.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SmppOut {
    /// The answer to an [`SmppEvent`].
    Answer(SmppAnswer),
    /// A request towards a bound ESME.
    Send(Box<SmppSend>),
}

impl SmppOut {
    /// The core this goes to.
    pub fn core(&self) -> usize {
        match self {
            Self::Answer(a) => a.core,
            Self::Send(s) => s.core,
        }
    }
}

/// Interned Python strs for the `&'static str` names and commands of SMPP events, per
/// interpreter (kept in its engine and dropped before the interpreter ends): an open-addressed
/// table keyed by the text's address, so a name costs a pointer compare and an INCREF per
/// event instead of a Rust allocation and a new str.
pub(crate) struct NameCache {
    slots: Vec<Option<(usize, usize, Owned)>>,
}

impl NameCache {
    /// A power of two, well above the ~40 distinct names and commands.
    const SLOTS: usize = 256;
    /// Slots probed from the home slot before an entry is overwritten.
    const PROBE: usize = 8;

    pub(crate) fn new() -> Self {
        Self {
            slots: (0..Self::SLOTS).map(|_| None).collect(),
        }
    }

    /// A new reference to the interned str of `s` (NULL with an exception set on failure).
    fn get(&mut self, s: &'static str) -> *mut ffi::PyObject {
        let key = (s.as_ptr() as usize, s.len());
        let home = (((key.0 ^ key.1) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 48) as usize;
        let mut i = home % Self::SLOTS;
        for k in 0..Self::PROBE {
            let j = (home + k) % Self::SLOTS;
            match self.slots.get(j) {
                Some(Some((p, n, o))) if (*p, *n) == key => {
                    // SAFETY: GIL held (module invariant); `o` is a live str of this
                    // interpreter.
                    return unsafe { ffi::Py_NewRef(o.as_ptr()) };
                }
                Some(None) => {
                    i = j;
                    break;
                }
                _ => {}
            }
        }
        let Ok(c) = std::ffi::CString::new(s) else {
            return new_str(s);
        };
        // SAFETY: GIL held; returns a new reference (interned) or NULL with an exception set.
        let o = unsafe { ffi::PyUnicode_InternFromString(c.as_ptr()) };
        // SAFETY: `o` is a new reference or NULL; the cache keeps its own reference.
        if let Some(keep) = unsafe { Owned::from_new(ffi::Py_XNewRef(o)) }
            && let Some(slot) = self.slots.get_mut(i)
        {
            *slot = Some((key.0, key.1, keep));
        }
        o
    }
}

fn value_to_py(v: SmppValue) -> *mut ffi::PyObject {
    match v {
        // SAFETY: GIL held; small ints come from CPython's cache.
        SmppValue::Int(i) => unsafe { ffi::PyLong_FromLongLong(i) },
        SmppValue::Str(s) => new_str(&s),
        // SAFETY: GIL held; pointer/length describe `b`, copied into a new bytes object.
        SmppValue::Bytes(b) => unsafe {
            ffi::PyBytes_FromStringAndSize(b.as_ptr().cast(), b.len() as ffi::Py_ssize_t)
        },
        SmppValue::List(l) => Ret::List(l.into_iter().map(Ret::Str).collect()).into_py(),
    }
}

/// A tuple of `items` (new references, NULL allowed: the tuple is then released and NULL
/// returned with the exception set).
fn tuple(items: impl ExactSizeIterator<Item = *mut ffi::PyObject>) -> *mut ffi::PyObject {
    // SAFETY: GIL held; PyTuple_New returns a new tuple or NULL; PyTuple_SetItem steals
    // each item reference (every slot is filled before the tuple is used).
    unsafe {
        let t = ffi::PyTuple_New(items.len() as ffi::Py_ssize_t);
        if t.is_null() {
            for o in items.filter(|o| !o.is_null()) {
                ffi::Py_DecRef(o);
            }
            return t;
        }
        let mut failed = false;
        for (i, o) in items.enumerate() {
            if o.is_null() {
                failed = true;
                // Leave the slot NULL: tupledealloc skips NULL items.
                continue;
            }
            ffi::PyTuple_SetItem(t, i as ffi::Py_ssize_t, o);
        }
        if failed {
            ffi::Py_DecRef(t);
            return std::ptr::null_mut();
        }
        t
    }
}

/// The event as the Python layer reads it (`siphon.smpp._dispatch`): `(id, core, kind,
/// command, session_id, system_id, client_addr, session_kind, names, values)`, where
/// `session_kind` is `"bind"` or `"esme"` (the `session_kind` field, taken out of the fields)
/// and `names`/`values` are the other fields in order, as two tuples. A new reference or
/// NULL with an exception set.
pub(crate) fn event_to_py(ev: SmppEvent, names: &mut NameCache) -> *mut ffi::PyObject {
    let mut kind = "esme";
    let mut fields = ev.fields;
    if let Some(i) = fields.iter().position(|(k, _)| *k == "session_kind") {
        if let (_, SmppValue::Str(k)) = fields.remove(i) {
            kind = if k == "bind" { "bind" } else { "esme" };
        }
    }
    let n = tuple(fields.iter().map(|(k, _)| names.get(k)));
    let v = tuple(fields.into_iter().map(|(_, v)| value_to_py(v)));
    let head = [
        // SAFETY: GIL held; new references or NULL (handled by `tuple`).
        unsafe { ffi::PyLong_FromUnsignedLongLong(ev.id) },
        // SAFETY: as above.
        unsafe { ffi::PyLong_FromSize_t(ev.core) },
        names.get(ev.kind),
        names.get(ev.command),
        new_str(&ev.session_id),
        new_str(&ev.system_id),
        new_str(&ev.client_addr),
        names.get(kind),
        n,
        v,
    ];
    tuple(head.into_iter())
}

/// Handles of SMPP events in the worker: their low 32 bits are all ones, never a SIP slot.
pub(crate) const HANDLE_TAG: u64 = 0xffff_ffff;

/// True for a handle made by [`handle`].
pub(crate) fn is_smpp_handle(h: u64) -> bool {
    h & HANDLE_TAG == HANDLE_TAG
}

/// The worker handle of an SMPP event.
pub(crate) fn handle(id: u64) -> u64 {
    (id << 32) | HANDLE_TAG
}

fn small(a: &Args<'_>, i: usize) -> PyResult<u8> {
    let v = a.int(i)?;
    u8::try_from(v).map_err(|_| PyErrSpec::Value(format!("{v} does not fit an octet")))
}

/// The core that owns `session_id` (its first two hex digits). An id that names no core goes
/// to core 0, whose reactor answers "not bound": the helper raises KeyError at the await, as
/// upstream does, not at the call.
fn core_of(session_id: &str, cores: usize) -> usize {
    session_id
        .get(..2)
        .and_then(|h| usize::from_str_radix(h, 16).ok())
        .filter(|c| *c < cores)
        .unwrap_or(0)
}

/// `_siphon.smpp_config_json()`: the loaded `smpp.yaml` as JSON (`null` when none).
#[cfg(feature = "smpp")]
pub(crate) fn smpp_config_json(_a: &Args<'_>) -> PyResult<Ret> {
    with_ctx(|c| Ok(Ret::Str(c.shared.cfg.smpp_config.to_string())))
}

/// `_siphon.smpp_config_json()` without the `smpp` feature: no config.
#[cfg(not(feature = "smpp"))]
pub(crate) fn smpp_config_json(_a: &Args<'_>) -> PyResult<Ret> {
    Ok(Ret::Str("null".into()))
}

/// `_siphon.smpp_answer(core, id, status, message_id, tlvs, query_state, final_date,
/// error_code, error)`: `query_state` < 0 when not a query_sm.
pub(crate) fn smpp_answer(a: &Args<'_>) -> PyResult<Ret> {
    let core = usize::try_from(a.int(0)?).unwrap_or(0);
    let id = a.int(1)? as u64;
    let status = u32::try_from(a.int(2)?)
        .map_err(|_| PyErrSpec::Value("command_status out of range".into()))?;
    let message_id = a.str(3)?.to_owned();
    let tlvs = a.bytes(4)?;
    let state = a.int(5)?;
    let query = if state >= 0 {
        Some((
            u8::try_from(state).unwrap_or(0),
            a.str(6)?.to_owned(),
            small(a, 7)?,
        ))
    } else {
        None
    };
    let error = a.truthy(8)?;
    with_ctx(|c| {
        let out = SmppOut::Answer(SmppAnswer {
            id,
            core,
            status,
            message_id,
            query,
            tlvs,
            error,
        });
        c.push_smpp(out);
        Ok(Ret::None)
    })
}

/// `_siphon.smpp_send(session_id, command, token, source, destination, short_message,
/// service_type, tlvs, src_ton, src_npi, dst_ton, dst_npi, esm_class, protocol_id,
/// priority_flag, registered_delivery, data_coding)`.
pub(crate) fn smpp_send(a: &Args<'_>) -> PyResult<Ret> {
    let session_id = a.str(0)?.to_owned();
    let command = a.str(1)?.to_owned();
    let token = a.int(2)? as u64;
    let mut octets = [0u8; 9];
    for (i, o) in octets.iter_mut().enumerate() {
        *o = small(a, 8 + i)?;
    }
    let send = SmppSend {
        core: 0,
        worker: 0,
        token,
        session_id,
        command,
        source_addr: a.str(3)?.to_owned(),
        destination_addr: a.str(4)?.to_owned(),
        short_message: a.bytes(5)?,
        octets,
        service_type: a.str(6)?.to_owned(),
        tlvs: a.bytes(7)?,
        via: None,
    };
    with_ctx(|c| {
        let mut send = send;
        send.core = core_of(&send.session_id, c.shared.lanes.len());
        send.worker = c.worker;
        c.push_smpp(SmppOut::Send(Box::new(send)));
        Ok(Ret::None)
    })
}

/// `_siphon.smpp_send_via(bind, command, token, source, destination, short_message,
/// service_type, tlvs, message_id, destinations, schedule_delivery_time, validity_period,
/// src_ton, src_npi, dst_ton, dst_npi, esm_class, protocol_id, priority_flag,
/// registered_delivery, data_coding, replace_if_present_flag, sm_default_msg_id, store,
/// esme)`: `destinations` is the addresses joined by NUL octets; `store` true asks for
/// store-and-forward with receipts for the ESME `esme` (a system_id, or empty).
pub(crate) fn smpp_send_via(a: &Args<'_>) -> PyResult<Ret> {
    let bind = a.str(0)?.to_owned();
    let command = a.str(1)?.to_owned();
    let token = a.int(2)? as u64;
    let mut octets = [0u8; 9];
    for (i, o) in octets.iter_mut().enumerate() {
        *o = small(a, 12 + i)?;
    }
    let dests = a.bytes(9)?;
    let destinations = if dests.is_empty() {
        Vec::new()
    } else {
        dests
            .split(|b| *b == 0)
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .collect()
    };
    let via = SmppVia {
        message_id: a.str(8)?.to_owned(),
        destinations,
        schedule_delivery_time: a.str(10)?.to_owned(),
        validity_period: a.str(11)?.to_owned(),
        replace_if_present_flag: small(a, 21)?,
        sm_default_msg_id: small(a, 22)?,
        store: if a.truthy(23)? {
            Some(a.str(24)?.to_owned())
        } else {
            None
        },
    };
    let send = SmppSend {
        core: 0,
        worker: 0,
        token,
        session_id: bind,
        command,
        source_addr: a.str(3)?.to_owned(),
        destination_addr: a.str(4)?.to_owned(),
        short_message: a.bytes(5)?,
        octets,
        service_type: a.str(6)?.to_owned(),
        tlvs: a.bytes(7)?,
        via: Some(Box::new(via)),
    };
    with_ctx(|c| {
        let mut send = send;
        send.core = bind_owner(&send.session_id, c.shared.lanes.len());
        send.worker = c.worker;
        c.push_smpp(SmppOut::Send(Box::new(send)));
        Ok(Ret::None)
    })
}
