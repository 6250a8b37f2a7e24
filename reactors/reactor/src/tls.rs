//! TLS as a byte-stream transform on the reactor (rustls 0.23, ring provider).
//!
//! Owns: server settings ([`TlsServer`]: PEM certificate and key, per-name certificates for SNI,
//! optional client-certificate verification, reload without restart) and client settings
//! ([`TlsClient`]: trust roots, optional client certificate). The records are encrypted and
//! decrypted in `cx.rs` above either backend, so kTLS is not needed. A reload swaps the
//! certificate used by the next handshake; established sessions keep theirs.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

/// TLS configuration errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The PEM text (or its file) could not be read.
    #[error("cannot read PEM: {0}")]
    Pem(std::io::Error),
    /// No certificate in the PEM text.
    #[error("no certificate found in PEM")]
    NoCertificate,
    /// No private key in the PEM text.
    #[error("no private key found in PEM")]
    NoKey,
    /// The server name is not a valid DNS name or IP address.
    #[error("invalid server name {0:?}")]
    InvalidName(String),
    /// rustls refused the configuration.
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let v: Vec<_> = rustls_pemfile::certs(&mut &*pem)
        .collect::<Result<_, _>>()
        .map_err(TlsError::Pem)?;
    if v.is_empty() {
        Err(TlsError::NoCertificate)
    } else {
        Ok(v)
    }
}

fn key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut &*pem)
        .map_err(TlsError::Pem)?
        .ok_or(TlsError::NoKey)
}

fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = certs(cert_pem)?;
    let key = key(key_pem)?;
    let signer = provider().key_provider.load_private_key(key)?;
    Ok(Arc::new(CertifiedKey::new(chain, signer)))
}

#[derive(Debug, Default)]
struct CertStore {
    default: RwLock<Option<Arc<CertifiedKey>>>,
    by_name: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = hello.server_name()
            && let Ok(map) = self.by_name.read()
            && let Some(k) = map.get(&name.to_ascii_lowercase())
        {
            return Some(k.clone());
        }
        self.default.read().ok()?.clone()
    }
}

/// Server-side TLS settings for a listener; cheap to clone, shared by all cores.
#[derive(Clone)]
pub struct TlsServer {
    config: Arc<ServerConfig>,
    store: Arc<CertStore>,
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer").finish_non_exhaustive()
    }
}

impl TlsServer {
    /// A server presenting `cert_pem` (chain) with `key_pem`. `client_ca_pem` turns on
    /// client-certificate verification against those roots (mutual TLS).
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        client_ca_pem: Option<&[u8]>,
    ) -> Result<Self, TlsError> {
        let store = Arc::new(CertStore::default());
        if let Ok(mut d) = store.default.write() {
            *d = Some(certified_key(cert_pem, key_pem)?);
        }
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match client_ca_pem {
            Some(pem) => {
                let mut roots = RootCertStore::empty();
                for c in certs(pem)? {
                    roots.add(c)?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = Arc::new(builder.with_cert_resolver(store.clone()));
        Ok(Self { config, store })
    }

    /// [`TlsServer::from_pem`] reading PEM files (the `tls:` section of siphon.yaml).
    pub fn from_files(
        cert: &std::path::Path,
        key: &std::path::Path,
        client_ca: Option<&std::path::Path>,
    ) -> Result<Self, TlsError> {
        let ca = client_ca
            .map(std::fs::read)
            .transpose()
            .map_err(TlsError::Pem)?;
        Self::from_pem(
            &std::fs::read(cert).map_err(TlsError::Pem)?,
            &std::fs::read(key).map_err(TlsError::Pem)?,
            ca.as_deref(),
        )
    }

    /// [`TlsServer::reload`] from PEM files (for example on SIGHUP).
    pub fn reload_files(
        &self,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Result<(), TlsError> {
        self.reload(
            &std::fs::read(cert).map_err(TlsError::Pem)?,
            &std::fs::read(key).map_err(TlsError::Pem)?,
        )
    }

    /// Present this certificate when the client asks for `name` through SNI.
    pub fn add_sni(&self, name: &str, cert_pem: &[u8], key_pem: &[u8]) -> Result<(), TlsError> {
        let k = certified_key(cert_pem, key_pem)?;
        if let Ok(mut m) = self.store.by_name.write() {
            m.insert(name.to_ascii_lowercase(), k);
        }
        Ok(())
    }

    /// Replace the default certificate; new handshakes use it at once, no restart.
    pub fn reload(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<(), TlsError> {
        let k = certified_key(cert_pem, key_pem)?;
        if let Ok(mut d) = self.store.default.write() {
            *d = Some(k);
        }
        Ok(())
    }

    pub(crate) fn connection(&self) -> Result<ServerConnection, rustls::Error> {
        ServerConnection::new(self.config.clone())
    }
}

/// Client-side TLS settings for outbound connections.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient").finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Trust the certificates in `roots_pem`; present `client` (cert PEM, key PEM) if the
    /// server asks for one.
    pub fn from_pem(roots_pem: &[u8], client: Option<(&[u8], &[u8])>) -> Result<Self, TlsError> {
        let mut roots = RootCertStore::empty();
        for c in certs(roots_pem)? {
            roots.add(c)?;
        }
        let b = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let config = match client {
            Some((c, k)) => b.with_client_auth_cert(certs(c)?, key(k)?)?,
            None => b.with_no_client_auth(),
        };
        Ok(Self {
            config: Arc::new(config),
        })
    }

    pub(crate) fn connection(&self, server_name: &str) -> Result<ClientConnection, TlsError> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| TlsError::InvalidName(server_name.to_owned()))?;
        Ok(ClientConnection::new(self.config.clone(), name)?)
    }
}
