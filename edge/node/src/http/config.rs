//! `http.yaml` (upstream siphon-http's schema: `servers[]` and `clients.<name>`), with
//! `${VAR}` / `${VAR:-default}` expansion (documented upstream, not implemented there).
//!
//! Unlike upstream, a bad file or value stops the start with `file:line: what is wrong`
//! (upstream logs and runs without HTTP), keys nobody knows are errors, and our additions
//! (`tls.client_auth`, `max_in_flight_per_core`) are documented in the README. A
//! `clients:`-only file is valid.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{ConfigError, Warning, expand, line_of};

const fn d_body() -> usize {
    1_048_576
}
const fn d_timeout() -> u64 {
    30_000
}
const fn d_client_timeout() -> u64 {
    5_000
}
const fn d_pool() -> usize {
    8
}
const fn d_inflight() -> usize {
    256
}

/// Whether a TLS listener asks for client certificates (`tls.client_auth`, ours).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// A certificate chaining to `client_ca` is required (upstream's only mode).
    #[default]
    Required,
    /// A certificate is verified when sent; a client without one is served too.
    Optional,
}

/// `servers[].tls`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTls {
    /// PEM chain.
    pub cert_path: PathBuf,
    /// PEM key (PKCS#1, PKCS#8 or SEC1).
    pub key_path: PathBuf,
    /// CA for client certificates (mTLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Ours: `required` (default, upstream's behaviour) or `optional`.
    #[serde(default)]
    pub client_auth: ClientAuth,
}

/// One listener (`servers[]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `ip:port`.
    pub listen: String,
    /// TLS (absent: cleartext, h1 and h2 prior knowledge).
    #[serde(default)]
    pub tls: Option<ServerTls>,
    /// Largest request body (413 beyond it, any framing). Per listener here.
    #[serde(default = "d_body")]
    pub max_body_bytes: usize,
    /// Deadline for body, middleware and handler (504, handler cancelled). Per listener here.
    #[serde(default = "d_timeout")]
    pub request_timeout_ms: u64,
    /// Peers whose `X-Forwarded-For` is believed (bare IPs).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

/// One named client (`clients.<name>`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Prefix of every path (`base.rstrip('/') + path`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Total timeout (connect, request, body).
    #[serde(default = "d_client_timeout")]
    pub timeout_ms: u64,
    /// PEM CA added to the trust roots.
    #[serde(default)]
    pub verify: Option<String>,
    /// Client certificate (PEM).
    #[serde(default)]
    pub cert: Option<String>,
    /// Client key (PEM).
    #[serde(default)]
    pub key: Option<String>,
    /// Idle connections kept per host.
    #[serde(default = "d_pool")]
    pub pool_size: usize,
    /// h2 without negotiation (cleartext and TLS).
    #[serde(default)]
    pub http2_prior_knowledge: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    servers: Vec<ServerConfig>,
    #[serde(default)]
    clients: BTreeMap<String, ClientConfig>,
    /// Ours: most requests a core handles at once (503 beyond).
    #[serde(default = "d_inflight")]
    max_in_flight_per_core: usize,
}

/// A loaded `http.yaml`.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Where it came from.
    pub path: PathBuf,
    /// Listeners, with their parsed addresses.
    pub servers: Vec<(SocketAddr, ServerConfig)>,
    /// Line of each server's `listen:` key.
    pub server_lines: Vec<usize>,
    /// Named clients.
    pub clients: BTreeMap<String, ClientConfig>,
    /// Per-core cap of requests in flight.
    pub max_in_flight_per_core: usize,
    /// Findings to log at start.
    pub warnings: Vec<Warning>,
}

impl HttpConfig {
    /// What scripts read as `siphon.http._config`.
    pub fn script_view(&self) -> serde_json::Value {
        serde_json::json!({
            "listen_addrs": self.servers.iter().map(|(a, _)| a.to_string()).collect::<Vec<_>>(),
            "client_names": self.clients.keys().collect::<Vec<_>>(),
        })
    }
}

fn err(path: &Path, line: usize, message: impl Into<String>) -> ConfigError {
    ConfigError::At {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// Read and check `http.yaml` with the process environment.
pub fn load(path: &Path) -> Result<HttpConfig, ConfigError> {
    let raw = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&raw, path, &|k| std::env::var(k).ok())
}

/// Parse `http.yaml` text; `env` resolves `${VAR}` (an unset one without a default is an
/// error naming it). Relative TLS paths are taken from the file's directory.
pub fn parse(
    raw: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<HttpConfig, ConfigError> {
    let text = expand(raw, env).map_err(|(line, m)| err(path, line, m))?;
    let file: File = if text.trim().is_empty() {
        File {
            servers: Vec::new(),
            clients: BTreeMap::new(),
            max_in_flight_per_core: d_inflight(),
        }
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
    let base = path.parent().unwrap_or_else(|| Path::new(""));
    let fix = |p: &mut PathBuf| {
        if p.is_relative() && !base.as_os_str().is_empty() {
            *p = base.join(&*p);
        }
    };
    // Lines of the n-th `listen:` key (servers are a list; line_of finds keys by path).
    let listen_lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.trim_start().trim_start_matches("- ");
            t.starts_with("listen:")
        })
        .map(|(i, _)| i + 1)
        .collect();
    let mut servers = Vec::new();
    let mut server_lines = Vec::new();
    let mut warnings = Vec::new();
    for (i, mut s) in file.servers.into_iter().enumerate() {
        let line = listen_lines
            .get(i)
            .copied()
            .unwrap_or_else(|| line_of(&text, &["servers"]));
        let addr: SocketAddr = s.listen.parse().map_err(|_| {
            err(
                path,
                line,
                format!("servers[{i}].listen: `{}` is not ip:port", s.listen),
            )
        })?;
        if s.max_body_bytes == 0 {
            return Err(err(
                path,
                line,
                format!("servers[{i}].max_body_bytes must be positive"),
            ));
        }
        if s.request_timeout_ms == 0 {
            return Err(err(
                path,
                line,
                format!("servers[{i}].request_timeout_ms must be positive"),
            ));
        }
        for p in &s.trusted_proxies {
            if p.parse::<std::net::IpAddr>().is_err() {
                warnings.push(Warning {
                    line,
                    message: format!(
                        "servers[{i}].trusted_proxies: `{p}` is not a bare IP (CIDR is not supported); ignored"
                    ),
                });
            }
        }
        if let Some(t) = s.tls.as_mut() {
            fix(&mut t.cert_path);
            fix(&mut t.key_path);
            if let Some(c) = t.client_ca.as_mut() {
                fix(c);
            }
            if t.client_auth == ClientAuth::Optional && t.client_ca.is_none() {
                return Err(err(
                    path,
                    line,
                    format!("servers[{i}].tls.client_auth needs tls.client_ca"),
                ));
            }
        }
        if servers.iter().any(|(a, _)| *a == addr) && addr.port() != 0 {
            return Err(err(
                path,
                line,
                format!("servers[{i}].listen: `{addr}` is listed twice"),
            ));
        }
        servers.push((addr, s));
        server_lines.push(line);
    }
    for (name, c) in &file.clients {
        let line = line_of(&text, &["clients", name]);
        if c.timeout_ms == 0 {
            return Err(err(
                path,
                line,
                format!("clients.{name}.timeout_ms must be positive"),
            ));
        }
        if c.cert.is_some() != c.key.is_some() {
            return Err(err(
                path,
                line,
                format!("clients.{name}: `cert` and `key` go together"),
            ));
        }
        if let Some(u) = &c.base_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(err(
                path,
                line,
                format!("clients.{name}.base_url `{u}` is not an http(s) URL"),
            ));
        }
    }
    if file.max_in_flight_per_core == 0 {
        return Err(err(
            path,
            line_of(&text, &["max_in_flight_per_core"]),
            "max_in_flight_per_core must be positive",
        ));
    }
    Ok(HttpConfig {
        path: path.to_path_buf(),
        servers,
        server_lines,
        clients: file.clients,
        max_in_flight_per_core: file.max_in_flight_per_core,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<HttpConfig, ConfigError> {
        parse(s, Path::new("/etc/siphon/http.yaml"), &|k| {
            (k == "API").then(|| "http://127.0.0.1:9".to_owned())
        })
    }

    #[test]
    fn clients_only_is_valid_and_expands_variables() {
        let c = p("clients:\n  api:\n    base_url: ${API}\n    timeout_ms: 250\n").unwrap();
        assert!(c.servers.is_empty());
        assert_eq!(
            c.clients["api"].base_url.as_deref(),
            Some("http://127.0.0.1:9")
        );
        assert_eq!(c.clients["api"].pool_size, 8);
        assert_eq!(
            c.script_view(),
            serde_json::json!({"listen_addrs": [], "client_names": ["api"]})
        );
    }

    #[test]
    fn servers_have_upstream_defaults() {
        let c = p("servers:\n  - listen: 127.0.0.1:8080\n").unwrap();
        let s = &c.servers[0].1;
        assert_eq!(s.max_body_bytes, 1_048_576);
        assert_eq!(s.request_timeout_ms, 30_000);
        assert!(s.tls.is_none());
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = p("servers:\n  - listen: 127.0.0.1:8080\n  - listen: localhost:80\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "/etc/siphon/http.yaml:3: servers[1].listen: `localhost:80` is not ip:port"
        );
        let e = p("servers:\n  - listen: 127.0.0.1:1\n    bogus: 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/etc/siphon/http.yaml:3:"), "{e}");
        assert!(e.contains("unknown field `bogus`"), "{e}");
        let e = p("clients:\n  a:\n    cert: x.pem\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "/etc/siphon/http.yaml:2: clients.a: `cert` and `key` go together"
        );
        let e = p("clients:\n  a:\n    base_url: ${NOPE}\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/etc/siphon/http.yaml:3:"), "{e}");
    }

    #[test]
    fn cidr_proxies_warn() {
        let c =
            p("servers:\n  - listen: 127.0.0.1:0\n    trusted_proxies: [10.0.0.0/8, 127.0.0.1]\n")
                .unwrap();
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].message.contains("10.0.0.0/8"));
    }
}
