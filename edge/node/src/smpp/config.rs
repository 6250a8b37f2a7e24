//! `smpp.yaml` (upstream siphon-smpp's schema: `server`, `binds`, `routing`, the legacy
//! top-level `bind_address`/`port`, `SMPP_*` environment variables, `${VAR}` expansion).
//!
//! Unlike upstream, the documented defaults apply even when `server:` is absent (upstream's
//! timers become 0 then), the listener starts only when `server:` or a legacy key is present,
//! a bad file stops the start with `file:line: what`, and `server.tls` is wired.
//! `binds` are outbound binds, run by `super::binds`; `binds[].tls` may name a CA only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::config::{ConfigError, Warning, expand, line_of};

fn d_addr() -> String {
    "0.0.0.0".into()
}
const fn d_port() -> u16 {
    2775
}
const fn d_init() -> u64 {
    5_000
}
const fn d_30s() -> u64 {
    30_000
}
const fn d_inactivity() -> u64 {
    300_000
}
const fn d_window() -> usize {
    512
}

/// `throttle_action`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThrottleAction {
    /// Delay the response until a token is due.
    #[default]
    Pace,
    /// Answer ESME_RTHROTTLED at once.
    Reject,
}

/// `server.tls` / `binds[].tls`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert_path: PathBuf,
    /// PEM private key.
    pub key_path: PathBuf,
    /// PEM CA for client certificates (server) or trust roots (binds).
    #[serde(default)]
    pub ca_path: Option<PathBuf>,
}

/// `server:` (the inbound listener).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Listen IP.
    #[serde(default = "d_addr")]
    pub bind_address: String,
    /// Listen port.
    #[serde(default = "d_port")]
    pub port: u16,
    /// TCP accept → bind deadline.
    #[serde(default = "d_init")]
    pub session_init_timer_ms: u64,
    /// Interval of our enquire_links.
    #[serde(default = "d_30s")]
    pub enquire_link_timer_ms: u64,
    /// No PDU for this long → the session ends.
    #[serde(default = "d_inactivity")]
    pub inactivity_timer_ms: u64,
    /// Deadline for our requests (deliver_to, data_to, enquire_link).
    #[serde(default = "d_30s")]
    pub response_timer_ms: u64,
    /// Inbound token bucket per session (0 = off).
    #[serde(default)]
    pub max_msg_per_sec: u32,
    /// `pace` or `reject`.
    #[serde(default)]
    pub throttle_action: ThrottleAction,
    /// Ours: most unanswered ESME requests per session; past it, ESME_RTHROTTLED.
    #[serde(default = "d_window")]
    pub window: usize,
    /// TLS for the listener (rustls).
    #[serde(default)]
    pub tls: Option<TlsFiles>,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            bind_address: d_addr(),
            port: d_port(),
            session_init_timer_ms: d_init(),
            enquire_link_timer_ms: d_30s(),
            inactivity_timer_ms: d_inactivity(),
            response_timer_ms: d_30s(),
            max_msg_per_sec: 0,
            throttle_action: ThrottleAction::Pace,
            window: d_window(),
            tls: None,
        }
    }
}

/// `binds[].tls`: every key optional (upstream requires `cert_path` and `key_path`, so its
/// documented `tls: {ca_path: ...}` does not parse). Without `ca_path` the system bundle
/// (`/etc/ssl/certs/ca-certificates.crt`) is trusted; `cert_path`+`key_path` add a client
/// certificate.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BindTls {
    /// PEM client certificate chain.
    #[serde(default)]
    pub cert_path: Option<PathBuf>,
    /// PEM client key.
    #[serde(default)]
    pub key_path: Option<PathBuf>,
    /// PEM trust roots for the SMSC's certificate.
    #[serde(default)]
    pub ca_path: Option<PathBuf>,
}

/// One outbound bind (`binds[]`), run by one core (see `siphon_script::bind_owner`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindConfig {
    /// Name used by `*_via(bind=...)`.
    pub name: String,
    /// SMSC host.
    pub host: String,
    /// SMSC port.
    pub port: u16,
    /// Our system_id.
    pub system_id: String,
    /// Our password.
    pub password: String,
    /// system_type.
    #[serde(default)]
    pub system_type: String,
    /// `transceiver` | `transmitter` | `receiver`.
    #[serde(default = "d_trx")]
    pub bind_type: String,
    /// Outbound pacing.
    #[serde(default)]
    pub max_msg_per_sec: u32,
    /// enquire_link interval.
    #[serde(default = "d_30s")]
    pub enquire_link_timer_ms: u64,
    /// Response deadline.
    #[serde(default = "d_30s")]
    pub response_timer_ms: u64,
    /// TLS to the SMSC.
    #[serde(default)]
    pub tls: Option<BindTls>,
    /// Ours: most unanswered requests on the bind; further sends wait in order.
    #[serde(default = "d_bind_window")]
    pub window: usize,
}

fn d_bind_window() -> usize {
    64
}

fn d_trx() -> String {
    "transceiver".into()
}

/// One routing rule (data for scripts).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Destination prefix.
    pub prefix: String,
    /// Chain of bind names.
    pub chain: Vec<String>,
    /// Rule name.
    #[serde(default)]
    pub name: String,
    /// Free-form options.
    #[serde(default)]
    pub options: BTreeMap<String, Value>,
}

/// `routing:` (data only).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// Default chain of bind names.
    #[serde(default)]
    pub default_chain: Vec<String>,
    /// Prefix rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    server: Option<Server>,
    #[serde(default)]
    binds: Vec<BindConfig>,
    #[serde(default)]
    routing: Routing,
    #[serde(default)]
    bind_address: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    store_and_forward: Option<StoreConfig>,
}

const fn d_retry_initial() -> u64 {
    1
}
const fn d_retry_max() -> u64 {
    60
}
const fn d_max_queue() -> usize {
    100_000
}

/// `store_and_forward.retry` (ours): backoff between attempts of a stored message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreRetry {
    /// First delay after a failed attempt, seconds (doubles per attempt).
    #[serde(default = "d_retry_initial")]
    pub initial_secs: u64,
    /// Largest delay, seconds.
    #[serde(default = "d_retry_max")]
    pub max_secs: u64,
    /// Failed attempts after which a message is dropped with a failure receipt (stat:UNDELIV);
    /// 0: no limit. Counted since the node started.
    #[serde(default)]
    pub max_attempts: u32,
}

impl Default for StoreRetry {
    fn default() -> Self {
        Self {
            initial_secs: d_retry_initial(),
            max_secs: d_retry_max(),
            max_attempts: 0,
        }
    }
}

/// `store_and_forward:` (ours; upstream has none): a durable queue behind `submit_via(...,
/// store=True)` and the receipt id map (`smpp/store.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The redb file (relative to `smpp.yaml`'s directory).
    pub path: PathBuf,
    /// Backoff between attempts.
    #[serde(default)]
    pub retry: StoreRetry,
    /// Messages waiting at most; past it `submit_via(store=True)` answers ESME_RMSGQFUL.
    #[serde(default = "d_max_queue")]
    pub max_queue: usize,
    /// Receipts waiting for their ESME to bind at most; past it a receipt from the SMSC is
    /// answered ESME_RMSGQFUL (the SMSC retries it).
    #[serde(default = "d_max_queue")]
    pub max_receipts: usize,
    /// Seconds after its acceptance (kept in the file, so across restarts) at which a message
    /// not yet taken by the SMSC is dropped with a failure receipt (stat:UNDELIV); 0: never.
    #[serde(default)]
    pub expire_secs: u64,
}

/// A loaded `smpp.yaml`.
#[derive(Debug, Clone)]
pub struct SmppConfig {
    /// Where it came from.
    pub path: PathBuf,
    /// Listener settings (documented defaults where absent).
    pub server: Server,
    /// Whether the listener starts (`server:` or legacy `bind_address`/`port` present).
    pub listen: bool,
    /// Outbound binds (file, then `SMPP_BIND_<NAME>_*`).
    pub binds: Vec<BindConfig>,
    /// Routing data.
    pub routing: Routing,
    /// Findings to log at start.
    pub warnings: Vec<Warning>,
    /// `store_and_forward:` (off when absent).
    pub store: Option<StoreConfig>,
}

impl SmppConfig {
    /// The listen address.
    pub fn listen_addr(&self) -> Result<std::net::SocketAddr, ConfigError> {
        let ip: std::net::IpAddr = self.server.bind_address.parse().map_err(|_| {
            self.at(
                &["server", "bind_address"],
                format!(
                    "`{}` is not an IP address",
                    self.server.bind_address.as_str()
                ),
            )
        })?;
        Ok(std::net::SocketAddr::new(ip, self.server.port))
    }

    /// What scripts read as `siphon.smpp._config` (spec §2.4): `server` without `tls`, `binds`
    /// without password, timers or tls, and `routing` (options keep their YAML types).
    pub fn script_view(&self) -> serde_json::Value {
        let s = &self.server;
        let binds: Vec<serde_json::Value> = self
            .binds
            .iter()
            .map(|b| {
                serde_json::json!({
                    "name": b.name, "host": b.host, "port": b.port, "system_id": b.system_id,
                    "system_type": b.system_type, "bind_type": b.bind_type,
                    "max_msg_per_sec": b.max_msg_per_sec,
                })
            })
            .collect();
        let rules: Vec<serde_json::Value> = self
            .routing
            .rules
            .iter()
            .map(|r| {
                serde_json::json!({
                    "prefix": r.prefix, "chain": r.chain, "name": r.name,
                    "options": serde_json::to_value(&r.options).unwrap_or_default(),
                })
            })
            .collect();
        serde_json::json!({
            "server": {
                "bind_address": s.bind_address, "port": s.port,
                "session_init_timer_ms": s.session_init_timer_ms,
                "enquire_link_timer_ms": s.enquire_link_timer_ms,
                "inactivity_timer_ms": s.inactivity_timer_ms,
                "response_timer_ms": s.response_timer_ms,
                "max_msg_per_sec": s.max_msg_per_sec,
                "throttle_action": match s.throttle_action {
                    ThrottleAction::Pace => "pace",
                    ThrottleAction::Reject => "reject",
                },
            },
            "binds": binds,
            "routing": {"default_chain": self.routing.default_chain, "rules": rules},
        })
    }

    fn at(&self, _path: &[&str], message: String) -> ConfigError {
        ConfigError::At {
            path: self.path.clone(),
            line: 0,
            message,
        }
    }
}

fn err(path: &Path, line: usize, message: impl Into<String>) -> ConfigError {
    ConfigError::At {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// Read and check `smpp.yaml` with the process environment.
pub fn load(path: &Path) -> Result<SmppConfig, ConfigError> {
    let raw = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let env: Vec<(String, String)> = std::env::vars().collect();
    parse(&raw, path, &env)
}

/// Parse `smpp.yaml` text; `env` is the environment (`${VAR}`, `SMPP_*`).
pub fn parse(raw: &str, path: &Path, env: &[(String, String)]) -> Result<SmppConfig, ConfigError> {
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    // Upstream: an unset variable without a default becomes "" (not an error).
    let text = expand(raw, &|k| get(k).or_else(|| Some(String::new())))
        .map_err(|(line, m)| err(path, line, m))?;
    let file: File = if text.trim().is_empty() {
        serde_yaml_ng::from_str("{}").map_err(|e| err(path, 0, e.to_string()))?
    } else {
        serde_yaml_ng::from_str(&text).map_err(|e| {
            let line = e.location().map_or(0, |l| l.line());
            let s = e.to_string();
            let s = s
                .find(" at line ")
                .map_or(s.as_str(), |i| &s[..i])
                .to_owned();
            err(path, line, s)
        })?
    };
    let listen = file.server.is_some() || file.bind_address.is_some() || file.port.is_some();
    let mut server = file.server.clone().unwrap_or_default();
    let has = |key: &str| line_of(&text, &["server", key]) > 0;
    if let Some(a) = &file.bind_address
        && !has("bind_address")
    {
        server.bind_address = a.clone();
    }
    if let Some(p) = file.port
        && !has("port")
    {
        server.port = p;
    }
    let mut warnings = Vec::new();
    if let Some(v) = get("SMPP_SERVER_MAX_MPS") {
        match v.trim().parse::<u32>() {
            Ok(n) => server.max_msg_per_sec = n,
            Err(_) => warnings.push(Warning {
                line: 0,
                message: format!("SMPP_SERVER_MAX_MPS=`{v}` is not a number; ignored"),
            }),
        }
    }
    if let Some(v) = get("SMPP_SERVER_THROTTLE_ACTION") {
        match v.trim().to_ascii_lowercase().as_str() {
            "pace" => server.throttle_action = ThrottleAction::Pace,
            "reject" => server.throttle_action = ThrottleAction::Reject,
            _ => warnings.push(Warning {
                line: 0,
                message: format!("SMPP_SERVER_THROTTLE_ACTION=`{v}` is not pace|reject; ignored"),
            }),
        }
    }
    if server.window == 0 {
        return Err(err(
            path,
            line_of(&text, &["server", "window"]),
            "`server.window` must be at least 1",
        ));
    }
    if server.bind_address.parse::<std::net::IpAddr>().is_err() {
        return Err(err(
            path,
            line_of(&text, &["server", "bind_address"]).max(line_of(&text, &["bind_address"])),
            format!("`{}` is not an IP address", server.bind_address),
        ));
    }
    let mut binds = file.binds.clone();
    binds.extend(env_binds(path, env)?);
    for b in &binds {
        if !matches!(
            b.bind_type.as_str(),
            "transceiver" | "transmitter" | "receiver"
        ) {
            return Err(err(
                path,
                line_of(&text, &["binds"]),
                format!(
                    "bind `{}`: bind_type `{}` is not transceiver, transmitter or receiver",
                    b.name, b.bind_type
                ),
            ));
        }
    }
    // Names are how `*_via(bind=...)` finds a bind: a second one with the same name (an
    // environment bind repeating a file bind, say) replaces the first, with a warning
    // (upstream keeps both and sends through whichever it finds first).
    let mut unique: Vec<BindConfig> = Vec::with_capacity(binds.len());
    for b in binds {
        if b.window == 0 {
            return Err(err(
                path,
                line_of(&text, &["binds"]),
                format!("bind `{}`: window must be at least 1", b.name),
            ));
        }
        // SMPP 3.4 §4.1.1: C-Octet Strings of at most 16, 9 and 13 octets with the NUL; a
        // longer value could never be sent (the bind would sit unbound without a word).
        for (key, value, max) in [
            ("system_id", &b.system_id, 15),
            ("password", &b.password, 8),
            ("system_type", &b.system_type, 12),
        ] {
            if value.len() > max {
                return Err(err(
                    path,
                    line_of(&text, &["binds"]),
                    format!(
                        "bind `{}`: {key} is {} octets; SMPP allows at most {max}",
                        b.name,
                        value.len()
                    ),
                ));
            }
        }
        if b.host.parse::<std::net::IpAddr>().is_err() {
            return Err(err(
                path,
                line_of(&text, &["binds"]),
                format!(
                    "bind `{}`: host `{}` is not an IP address (names are not resolved yet)",
                    b.name, b.host
                ),
            ));
        }
        if let Some(i) = unique.iter().position(|u| u.name == b.name) {
            warnings.push(Warning {
                line: line_of(&text, &["binds"]),
                message: format!("bind `{}` is defined twice; the later one is used", b.name),
            });
            unique[i] = b;
        } else {
            unique.push(b);
        }
    }
    let binds = unique;
    let mut routing = file.routing.clone();
    if let Some(c) = get("SMPP_DEFAULT_CHAIN") {
        routing.default_chain = c
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
    }
    if let Some(t) = &server.tls {
        for (key, p) in [
            ("cert_path", Some(&t.cert_path)),
            ("key_path", Some(&t.key_path)),
        ]
        .into_iter()
        .chain(std::iter::once(("ca_path", t.ca_path.as_ref())))
        {
            if let Some(p) = p
                && p.as_os_str().is_empty()
            {
                return Err(err(
                    path,
                    line_of(&text, &["server", "tls", key]),
                    format!("`server.tls.{key}` is empty"),
                ));
            }
        }
    }
    if !listen {
        warnings.push(Warning {
            line: 0,
            message: "no `server:` (or legacy `bind_address`/`port`): the SMPP listener is off"
                .into(),
        });
    }
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    if let Some(t) = server.tls.as_mut() {
        for p in [&mut t.cert_path, &mut t.key_path]
            .into_iter()
            .chain(t.ca_path.as_mut())
        {
            if p.is_relative() && !base.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        }
    }
    let mut store = file.store_and_forward.clone();
    if let Some(st) = store.as_mut() {
        let at = line_of(&text, &["store_and_forward"]);
        if st.path.as_os_str().is_empty() {
            return Err(err(path, at, "`store_and_forward.path` is empty"));
        }
        if st.retry.initial_secs == 0 || st.retry.max_secs < st.retry.initial_secs {
            return Err(err(
                path,
                at,
                "`store_and_forward.retry`: initial_secs must be at least 1 and at most max_secs",
            ));
        }
        if st.max_queue == 0 || st.max_receipts == 0 {
            return Err(err(
                path,
                at,
                "`store_and_forward`: max_queue and max_receipts must be at least 1",
            ));
        }
        if st.path.is_relative() && !base.as_os_str().is_empty() {
            st.path = base.join(&st.path);
        }
    }
    Ok(SmppConfig {
        path: path.to_path_buf(),
        server,
        listen,
        binds,
        routing,
        warnings,
        store,
    })
}

/// `SMPP_BIND_<NAME>_*` binds (NAME lowercased; `_HOST` makes a bind exist).
fn env_binds(path: &Path, env: &[(String, String)]) -> Result<Vec<BindConfig>, ConfigError> {
    let mut names: Vec<String> = env
        .iter()
        .filter_map(|(k, _)| {
            k.strip_prefix("SMPP_BIND_")?
                .strip_suffix("_HOST")
                .filter(|n| !n.is_empty() && !n.contains('_'))
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    let mut out = Vec::new();
    for n in names {
        let get = |s: &str| {
            let key = format!("SMPP_BIND_{n}_{s}");
            env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
        };
        let need =
            |s: &str| get(s).ok_or_else(|| err(path, 0, format!("SMPP_BIND_{n}_{s} is required")));
        let num = |s: &str, d: u64| -> Result<u64, ConfigError> {
            match get(s) {
                None => Ok(d),
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| err(path, 0, format!("SMPP_BIND_{n}_{s}=`{v}` is not a number"))),
            }
        };
        let port = u16::try_from(num("PORT", 2775)?)
            .map_err(|_| err(path, 0, format!("SMPP_BIND_{n}_PORT is out of range")))?;
        out.push(BindConfig {
            name: n.to_ascii_lowercase(),
            host: need("HOST")?,
            port,
            system_id: need("SYSTEM_ID")?,
            password: need("PASSWORD")?,
            system_type: get("SYSTEM_TYPE").unwrap_or_default(),
            bind_type: get("BIND_TYPE").unwrap_or_else(d_trx),
            max_msg_per_sec: u32::try_from(num("MAX_MPS", 0)?).unwrap_or(u32::MAX),
            enquire_link_timer_ms: num("ENQUIRE_LINK_MS", 30_000)?,
            response_timer_ms: num("RESPONSE_MS", 30_000)?,
            tls: get("TLS")
                .filter(|v| {
                    matches!(
                        v.trim().to_ascii_lowercase().as_str(),
                        "true" | "1" | "yes" | "on"
                    )
                })
                .map(|_| BindTls {
                    ca_path: get("CA").map(PathBuf::from),
                    ..BindTls::default()
                }),
            window: usize::try_from(num("WINDOW", 64)?).unwrap_or(usize::MAX),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str, env: &[(&str, &str)]) -> Result<SmppConfig, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        parse(s, Path::new("smpp.yaml"), &env)
    }

    #[test]
    fn no_server_means_documented_defaults_and_no_listener() {
        let c = p("routing:\n  default_chain: [a]\n", &[]).unwrap();
        assert!(!c.listen);
        assert_eq!(c.server.session_init_timer_ms, 5_000);
        assert_eq!(c.server.enquire_link_timer_ms, 30_000);
        assert_eq!(c.server.inactivity_timer_ms, 300_000);
        assert_eq!(c.server.response_timer_ms, 30_000);
        assert_eq!(c.server.window, 512);
        assert_eq!(c.server.port, 2775);
    }

    #[test]
    fn empty_server_listens_with_defaults() {
        let c = p("server: {}\n", &[]).unwrap();
        assert!(c.listen);
        assert_eq!(c.server.response_timer_ms, 30_000);
    }

    #[test]
    fn legacy_keys_listen() {
        let c = p("bind_address: 127.0.0.1\nport: 2776\n", &[]).unwrap();
        assert!(c.listen);
        assert_eq!(c.server.port, 2776);
        assert_eq!(c.server.bind_address, "127.0.0.1");
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let e = p("server:\n  port: 1\n  windw: 3\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("smpp.yaml:3:"), "{e}");
        assert!(e.contains("windw"), "{e}");
    }

    #[test]
    fn bad_throttle_action_is_an_error() {
        let e = p("server:\n  throttle_action: Slow\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("smpp.yaml:2:"), "{e}");
    }

    #[test]
    fn env_expansion_and_overrides() {
        let c = p(
            "server:\n  port: ${P:-2780}\n  bind_address: \"${NOPE}127.0.0.1\"\n",
            &[
                ("SMPP_SERVER_MAX_MPS", "50"),
                ("SMPP_SERVER_THROTTLE_ACTION", "REJECT"),
            ],
        )
        .unwrap();
        assert_eq!(c.server.port, 2780);
        assert_eq!(c.server.max_msg_per_sec, 50);
        assert_eq!(c.server.throttle_action, ThrottleAction::Reject);
        let c = p("server: {}\n", &[("SMPP_SERVER_MAX_MPS", "x")]).unwrap();
        assert_eq!(c.server.max_msg_per_sec, 0);
        assert!(c.warnings.iter().any(|w| w.message.contains("MAX_MPS")));
    }

    #[test]
    fn bind_tls_with_a_ca_only_parses_and_duplicates_are_replaced() {
        let c = p(
            "binds:\n  - {name: a, host: 127.0.0.1, port: 1, system_id: s, password: p, tls: {ca_path: ca.pem}}\n",
            &[
                ("SMPP_BIND_A_HOST", "127.0.0.2"),
                ("SMPP_BIND_A_SYSTEM_ID", "me"),
                ("SMPP_BIND_A_PASSWORD", "pw"),
                ("SMPP_BIND_A_TLS", "yes"),
                ("SMPP_BIND_A_CA", "/x.pem"),
            ],
        );
        let c = c.unwrap();
        assert_eq!(c.binds.len(), 1);
        assert_eq!(c.binds[0].host, "127.0.0.2");
        assert_eq!(
            c.binds[0].tls.as_ref().and_then(|t| t.ca_path.clone()),
            Some(PathBuf::from("/x.pem"))
        );
        assert!(c.warnings.iter().any(|w| w.message.contains("twice")));
        let c = p(
            "binds:\n  - {name: b, host: 10.1.1.1, port: 1, system_id: s, password: p, tls: {ca_path: ca.pem}}\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            c.binds[0].tls,
            Some(BindTls {
                ca_path: Some(PathBuf::from("ca.pem")),
                ..BindTls::default()
            })
        );
    }

    #[test]
    fn env_binds_are_appended() {
        let c = p(
            "server: {}\n",
            &[
                ("SMPP_BIND_UP_HOST", "10.0.0.1"),
                ("SMPP_BIND_UP_SYSTEM_ID", "me"),
                ("SMPP_BIND_UP_PASSWORD", "pw"),
                ("SMPP_BIND_UP_PORT", "2800"),
            ],
        )
        .unwrap();
        assert_eq!(c.binds.len(), 1);
        assert_eq!(c.binds[0].name, "up");
        assert_eq!(c.binds[0].port, 2800);
        assert_eq!(c.binds[0].window, 64);
        assert!(c.binds[0].tls.is_none());
        let e = p("server: {}\n", &[("SMPP_BIND_UP_HOST", "10.0.0.9")]).unwrap_err();
        assert!(e.to_string().contains("SYSTEM_ID"));
        let e = p(
            "server: {}\n",
            &[
                ("SMPP_BIND_UP_HOST", "10.0.0.9"),
                ("SMPP_BIND_UP_SYSTEM_ID", "a"),
                ("SMPP_BIND_UP_PASSWORD", "b"),
                ("SMPP_BIND_UP_PORT", "x"),
            ],
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a number"));
    }

    #[test]
    fn bind_credentials_longer_than_smpp_allows_are_refused() {
        let bind = |sid: &str, pw: &str| {
            format!(
                "binds:\n  - {{name: a, host: 127.0.0.1, port: 1, system_id: {sid}, password: {pw}}}\n"
            )
        };
        assert!(p(&bind("fifteen-octets!", "8octets!"), &[]).is_ok());
        let e = p(&bind("gw", "gw-secret"), &[]).unwrap_err().to_string();
        assert!(e.contains("password is 9 octets"), "{e}");
        let e = p(&bind("sixteen-octets!!", "pw"), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("system_id is 16 octets"), "{e}");
    }

    #[test]
    fn tls_without_cert_fails_to_parse() {
        let e = p("server:\n  tls:\n    ca_path: ca.pem\n", &[]).unwrap_err();
        assert!(e.to_string().contains("cert_path"), "{e}");
    }
}
