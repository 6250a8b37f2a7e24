//! `siphon check`: everything a start would validate, without starting: files, TLS material,
//! listeners, extension configs and the routing script. Errors are `file:line: message`.

use std::fs;
use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use crate::config::{self, ConfigError, Loaded};

/// The embedded default config, with its script written next to a private runtime directory
/// so that the script layer can load (and hot-reload) it like any other file.
pub fn embedded_default() -> Result<Loaded, ConfigError> {
    let dir = runtime_dir();
    let script = dir.join("proxy_default.py");
    let write = fs::create_dir_all(&dir).and_then(|()| fs::write(&script, config::DEFAULT_SCRIPT));
    if let Err(source) = write {
        return Err(ConfigError::Read {
            path: script,
            source,
        });
    }
    config::parse(
        config::DEFAULT_YAML,
        Path::new("<embedded siphon.yaml>"),
        &dir,
        &|k| std::env::var(k).ok(),
    )
}

fn runtime_dir() -> PathBuf {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    // The directory only needs to be per user; the login uid from /proc avoids libc.
    let uid = fs::read_to_string("/proc/self/loginuid")
        .ok()
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "0".into());
    base.join(format!("siphon-{uid}"))
}

/// `smpp.yaml`: schema, values, TLS files, and that the listener address can be bound.
#[cfg(feature = "smpp")]
fn check_smpp(p: &Path) -> Result<(), ConfigError> {
    let c = crate::smpp::config::load(p)?;
    for w in &c.warnings {
        eprintln!("{}:{}: warning: {}", c.path.display(), w.line, w.message);
    }
    let at = |m: String| ConfigError::At {
        path: c.path.clone(),
        line: 0,
        message: m,
    };
    if let Some(t) = &c.server.tls {
        for f in [Some(&t.cert_path), Some(&t.key_path), t.ca_path.as_ref()]
            .into_iter()
            .flatten()
        {
            fs::File::open(f).map_err(|e| at(format!("server.tls: `{}`: {e}", f.display())))?;
        }
    }
    if c.listen {
        let addr = c.listen_addr()?;
        TcpListener::bind(addr).map_err(|e| at(format!("SMPP listener {addr}: {e}")))?;
    }
    Ok(())
}

/// `http.yaml`: schema, values, TLS files, client material, and that listeners can bind.
#[cfg(feature = "http")]
fn check_http(p: &Path) -> Result<(), ConfigError> {
    let c = crate::http::config::load(p)?;
    for w in &c.warnings {
        eprintln!("{}:{}: warning: {}", c.path.display(), w.line, w.message);
    }
    for (i, (addr, s)) in c.servers.iter().enumerate() {
        let at = |m: String| ConfigError::At {
            path: c.path.clone(),
            line: c.server_lines.get(i).copied().unwrap_or(0),
            message: m,
        };
        if let Some(t) = &s.tls {
            for f in [Some(&t.cert_path), Some(&t.key_path), t.client_ca.as_ref()]
                .into_iter()
                .flatten()
            {
                fs::File::open(f)
                    .map_err(|e| at(format!("servers[{i}].tls: `{}`: {e}", f.display())))?;
            }
        }
        TcpListener::bind(addr).map_err(|e| at(format!("servers[{i}].listen {addr}: {e}")))?;
    }
    crate::http::HttpRuntime::start(c.clone(), &[]).map_err(|e| ConfigError::At {
        path: c.path.clone(),
        line: 0,
        message: e.to_string(),
    })?;
    Ok(())
}

fn readable(l: &Loaded, key: &[&str], p: &Path, what: &str) -> Result<(), ConfigError> {
    match fs::metadata(p) {
        Ok(m) if m.is_file() => fs::File::open(p)
            .map(drop)
            .map_err(|e| l.error_at(key, format!("{what} `{}` cannot be read: {e}", p.display()))),
        Ok(_) => Err(l.error_at(key, format!("{what} `{}` is not a file", p.display()))),
        Err(e) => Err(l.error_at(key, format!("{what} `{}`: {e}", p.display()))),
    }
}

fn pem_has(
    l: &Loaded,
    key: &[&str],
    p: &Path,
    marker: &str,
    what: &str,
) -> Result<(), ConfigError> {
    readable(l, key, p, what)?;
    let text = fs::read_to_string(p)
        .map_err(|e| l.error_at(key, format!("{what} `{}`: {e}", p.display())))?;
    if text.contains(marker) {
        Ok(())
    } else {
        Err(l.error_at(
            key,
            format!(
                "{what} `{}` holds no PEM block containing `{marker}`",
                p.display()
            ),
        ))
    }
}

/// Can this host bind the address? In use is fine (a running node may hold it); an address
/// that is not local is an error.
fn bindable(l: &Loaded, key: &[&str], addr: &str, udp: bool) -> Result<(), ConfigError> {
    let sa: SocketAddr = addr
        .parse()
        .map_err(|_| l.error_at(key, format!("`{addr}` is not an ip:port address")))?;
    let res = if udp {
        UdpSocket::bind(sa).map(drop)
    } else {
        TcpListener::bind(sa).map(drop)
    };
    match res {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Ok(()),
        Err(e) => Err(l.error_at(key, format!("cannot listen on `{addr}`: {e}"))),
    }
}

/// Compile and import the routing script in the embedded Python, as a start would, and count
/// the handlers it registers (at least one is required).
fn check_script(l: &Loaded) -> Result<usize, ConfigError> {
    use std::sync::{Arc, Mutex};
    let c = &l.config;
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = Arc::clone(&errors);
    let mut hc = siphon_script::HostConfig::new(1, c.script.path.clone());
    hc.include_paths = c.script.include_paths.clone();
    hc.reload = siphon_script::ReloadMode::Sighup;
    hc.force_shared_interpreter = true;
    hc.local_domains = c.domain.local.clone();
    hc.auth_users = c
        .auth
        .users
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(doc) = &c.script_config {
        hc.script_config = serde_json::to_value(doc).unwrap_or_default();
    }
    hc.log = Arc::new(move |lvl, _, msg| {
        if matches!(lvl, siphon_script::LogLevel::Error)
            && let Ok(mut v) = sink.lock()
        {
            v.push(msg.to_string());
        }
    });
    let script = c.script.path.display().to_string();
    let host = siphon_script::Host::start(hc).map_err(|e| {
        let detail = errors.lock().map(|v| v.join("\n")).unwrap_or_default();
        l.error_at(
            &["script", "path"],
            format!("script `{script}` failed to load: {e}\n{detail}"),
        )
    })?;
    let n = host
        .handle()
        .metric_value("siphon_script_handlers", &[])
        .unwrap_or(0.0);
    host.shutdown();
    if n < 1.0 {
        return Err(l.error_at(
            &["script", "path"],
            format!("script `{script}` registers no handler (every request would get 500 No Script Handler)"),
        ));
    }
    // Counts are small integers.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(n as usize)
}

/// Validate what a start would; returns a one-line summary.
pub fn deep_check(l: &Loaded) -> Result<String, ConfigError> {
    let c = &l.config;
    readable(l, &["script", "path"], &c.script.path, "script")?;
    for p in &c.script.include_paths {
        if !p.is_dir() {
            return Err(l.error_at(
                &["script", "include_paths"],
                format!("include path `{}` is not a directory", p.display()),
            ));
        }
    }
    if let Some(t) = &c.tls {
        if let Some(cert) = &t.certificate {
            pem_has(
                l,
                &["tls", "certificate"],
                cert,
                "CERTIFICATE",
                "certificate",
            )?;
        }
        if let Some(key) = &t.private_key {
            pem_has(
                l,
                &["tls", "private_key"],
                key,
                "PRIVATE KEY",
                "private key",
            )?;
        }
        if t.verify_client {
            match &t.client_ca {
                Some(ca) => pem_has(l, &["tls", "client_ca"], ca, "CERTIFICATE", "client CA")?,
                None => {
                    return Err(l.error_at(
                        &["tls", "verify_client"],
                        "`tls.verify_client` needs `tls.client_ca`",
                    ));
                }
            }
        }
        for s in &t.certificates {
            pem_has(
                l,
                &["tls", "certificates"],
                &s.certificate,
                "CERTIFICATE",
                "certificate",
            )?;
            pem_has(
                l,
                &["tls", "certificates"],
                &s.private_key,
                "PRIVATE KEY",
                "private key",
            )?;
        }
    }
    for e in &c.listen.udp {
        bindable(l, &["listen", "udp"], e.address(), true)?;
    }
    for e in c.listen.tcp.iter().chain(&c.listen.tls) {
        bindable(l, &["listen", "tcp"], e.address(), false)?;
    }
    for (name, p) in &c.extensions {
        if config::compiled_extensions().contains(&name.as_str()) {
            readable(l, &["extensions", name], p, "extension config")?;
            #[cfg(feature = "smpp")]
            if name == "smpp" {
                check_smpp(p)?;
            }
            #[cfg(feature = "http")]
            if name == "http" {
                check_http(p)?;
            }
        }
    }
    let handlers = check_script(l)?;
    let listeners = c.listen.udp.len() + c.listen.tcp.len() + c.listen.tls.len();
    Ok(format!(
        "{listeners} listener(s), script {} with {handlers} handler(s)",
        c.script.path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(yaml: &str, dir: &Path) -> Loaded {
        config::parse(yaml, &dir.join("siphon.yaml"), dir, &|_| None).unwrap()
    }

    #[test]
    fn missing_script_is_located() {
        let dir = std::env::temp_dir().join(format!("siphon-check-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let l = loaded(
            "listen:\n  udp: [\"127.0.0.1:0\"]\nscript:\n  path: nope.py\n",
            &dir,
        );
        let e = deep_check(&l).unwrap_err().to_string();
        assert!(e.contains("siphon.yaml:4: script"), "{e}");
        fs::write(dir.join("nope.py"), "x = 1\n").unwrap();
        let e = deep_check(&l).unwrap_err().to_string();
        assert!(e.contains("registers no handler"), "{e}");
        let l = loaded(
            "listen:\n  udp: [\"192.0.2.77:5060\"]\nscript:\n  path: nope.py\n",
            &dir,
        );
        let e = deep_check(&l).unwrap_err().to_string();
        assert!(e.contains("siphon.yaml:2: cannot listen on"), "{e}");
        fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn embedded_default_is_complete() {
        let l = embedded_default().unwrap();
        assert!(l.config.script.path.exists());
        assert!(!l.config.auth.users.is_empty());
    }
}
