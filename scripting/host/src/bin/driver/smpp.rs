//! SMPP ops of the driver (feature `smpp`), for the SDK's `SmppTestHarness`:
//!
//! ```text
//!   {"op":"smpp_event","id":1,"core":0,"kind":"pdu","command":"submit_sm","session_id":"esme-1",
//!    "system_id":"esme1","client_addr":"203.0.113.5:5000",
//!    "fields":[["source_addr","str","1555"],["esm_class","int",0],["short_message","hex","6869"],
//!              ["destinations","list",["1","2"]]]}
//!   {"op":"smpp_complete","worker":0,"token":3,"status":0,"message_id":"abc"}
//! ```
//! stdout: `smpp_answer` (the script's answer to an event) and `smpp_send` (a PDU the script
//! sends towards an ESME; the harness answers it with `smpp_complete`).

use anyhow::{Context, bail};
use serde_json::{Value, json};
use siphon_script::{SmppEvent, SmppOut, SmppValue};

const KINDS: &[&str] = &["bind", "pdu", "session"];
const COMMANDS: &[&str] = &[
    "bind_transceiver",
    "bind_transmitter",
    "bind_receiver",
    "submit_sm",
    "submit_sm_multi",
    "deliver_sm",
    "data_sm",
    "query_sm",
    "cancel_sm",
    "replace_sm",
    "alert_notification",
    "bound",
    "unbound",
];
const FIELDS: &[&str] = &[
    "password",
    "system_type",
    "interface_version",
    "message_id",
    "service_type",
    "source_addr_ton",
    "source_addr_npi",
    "source_addr",
    "dest_addr_ton",
    "dest_addr_npi",
    "destination_addr",
    "esme_addr_ton",
    "esme_addr_npi",
    "esme_addr",
    "esm_class",
    "protocol_id",
    "priority_flag",
    "registered_delivery",
    "data_coding",
    "short_message",
    "destinations",
    "tlvs",
];

fn known(s: &str, names: &[&'static str]) -> anyhow::Result<&'static str> {
    match names.iter().find(|n| **n == s) {
        Some(n) => Ok(n),
        None => bail!("unknown SMPP name {s:?}"),
    }
}

fn unhex(s: &str) -> anyhow::Result<Vec<u8>> {
    if s.len() % 2 != 0 {
        bail!("odd hex length");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .context("bad hex")
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An `smpp_event` op as an [`SmppEvent`].
pub fn parse_event(v: &Value) -> anyhow::Result<SmppEvent> {
    let text = |k: &str| v[k].as_str().unwrap_or("").to_owned();
    let mut fields = Vec::new();
    for f in v["fields"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let name = known(f[0].as_str().context("field name")?, FIELDS)?;
        let value = match f[1].as_str().unwrap_or("") {
            "int" => SmppValue::Int(f[2].as_i64().context("int field")?),
            "str" => SmppValue::Str(f[2].as_str().context("str field")?.to_owned()),
            "hex" => SmppValue::Bytes(unhex(f[2].as_str().context("hex field")?)?),
            "list" => SmppValue::List(
                f[2].as_array()
                    .context("list field")?
                    .iter()
                    .map(|x| x.as_str().unwrap_or("").to_owned())
                    .collect(),
            ),
            t => bail!("unknown field type {t:?}"),
        };
        fields.push((name, value));
    }
    Ok(SmppEvent {
        id: v["id"].as_u64().context("id")?,
        core: v["core"].as_u64().unwrap_or(0) as usize,
        kind: known(v["kind"].as_str().unwrap_or(""), KINDS)?,
        command: known(v["command"].as_str().unwrap_or(""), COMMANDS)?,
        session_id: text("session_id"),
        system_id: text("system_id"),
        client_addr: text("client_addr"),
        fields,
    })
}

/// What the script put on an SMPP lane, as a stdout line.
pub fn out_json(o: &SmppOut) -> Value {
    match o {
        SmppOut::Answer(a) => json!({
            "type": "smpp_answer", "id": a.id, "core": a.core, "status": a.status,
            "message_id": a.message_id, "query": a.query, "tlvs": hex(&a.tlvs), "error": a.error,
        }),
        SmppOut::Send(s) => json!({
            "type": "smpp_send", "core": s.core, "worker": s.worker, "token": s.token,
            "session_id": s.session_id, "command": s.command, "source_addr": s.source_addr,
            "destination_addr": s.destination_addr, "short_message": hex(&s.short_message),
            "octets": s.octets, "service_type": s.service_type, "tlvs": hex(&s.tlvs),
        }),
        _ => json!({"type": "smpp_other"}),
    }
}
