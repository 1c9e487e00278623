//! TLS for the JSON-RPC servers (`--tls-cert`/`--tls-key`): rustls with
//! the `ring` provider, no OpenSSL.
//!
//! A server given a certificate chain and its key serves `https://` and
//! `wss://` on its one port instead of `http://` and `ws://`; clients trust
//! it through the system's roots or a CA file of their own
//! (`lockstep_api::client::ClientOptions::with_ca_file`).
//!
//! The key file is a secret: it is refused when its group or others may
//! read it (as ssh refuses a private key), and nothing in it is ever quoted
//! in an error.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Largest certificate or key file read (a chain of a few certificates is
/// a few KiB).
const MAX_PEM_FILE: u64 = 1024 * 1024;

/// How long a client may take to complete the TLS handshake before its
/// connection is closed.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The `--tls-cert`/`--tls-key` pair of a server's command line.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsArgs {
    /// PEM file with the server's certificate chain, leaf first: the RPC
    /// port then serves https:// and wss:// instead of http:// and ws://
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM file with the private key of --tls-cert (PKCS#8, PKCS#1 or
    /// SEC1); refused when its group or others may read it
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The server's TLS set-up, or `None` when neither flag is given.
    pub fn load(&self) -> Result<Option<ServerTls>, TlsError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => ServerTls::from_pem_files(cert, key).map(Some),
            (None, None) => Ok(None),
            // clap's `requires` catches this on a command line; a config
            // built in code gets the same answer.
            _ => Err(TlsError::Incomplete),
        }
    }
}

/// Why a TLS set-up could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Only one of the certificate and the key was given.
    #[error("TLS needs both --tls-cert and --tls-key")]
    Incomplete,
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file is larger than any certificate chain or key.
    #[error("{path}: larger than {MAX_PEM_FILE} bytes, not a PEM file")]
    TooLarge {
        /// The file.
        path: String,
    },
    /// The certificate file holds no certificate.
    #[error("{path}: no PEM certificate in it ({reason})")]
    NoCertificate {
        /// The file.
        path: String,
        /// What the PEM reader found wrong.
        reason: String,
    },
    /// The key file holds no private key (nothing of it is quoted).
    #[error("{path}: no PEM private key in it (expected PKCS#8, PKCS#1 or SEC1)")]
    NoKey {
        /// The file.
        path: String,
    },
    /// Others than its owner may read (or write) the key file.
    #[error(
        "{path} is accessible by other users (mode {mode:04o}): a TLS key must be private to its owner; run `chmod 600 {path}`"
    )]
    NotPrivate {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// rustls refused the pair (a key that does not match the
    /// certificate, an unsupported algorithm).
    #[error("the TLS certificate and key cannot be used: {0}")]
    Rejected(String),
}

/// A server's TLS set-up: what [`crate::rpc_server`] wraps each accepted
/// connection in.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls(…)")
    }
}

impl ServerTls {
    /// Reads a PEM certificate chain and its PEM private key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
        let chain = read_certificates(cert)?;
        let key_name = key.display().to_string();
        let key_bytes = read_bounded(key, true)?;
        let key = PrivateKeyDer::from_pem_slice(&key_bytes)
            .map_err(|_| TlsError::NoKey { path: key_name })?;
        ServerTls::from_der(chain, key)
    }

    /// A chain (leaf first) and its key, already decoded (tests make them
    /// in memory).
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<ServerTls, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rejected(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rejected(e.to_string()))?;
        // HTTP/1.1 carries both the calls and the WebSocket upgrade.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            config: Arc::new(config),
        })
    }

    /// The acceptor of one server.
    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}

/// The URLs a JSON-RPC server bound to `addr` answers on, HTTP then
/// WebSocket: `https://` and `wss://` with TLS, `http://` and `ws://`
/// without (what a server's startup line names).
pub fn server_urls(addr: SocketAddr, tls: bool) -> (String, String) {
    if tls {
        (format!("https://{addr}"), format!("wss://{addr}"))
    } else {
        (format!("http://{addr}"), format!("ws://{addr}"))
    }
}

/// Every certificate in a PEM file, in order.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let name = path.display().to_string();
    let bytes = read_bounded(path, false)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::NoCertificate {
            path: name.clone(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: name,
            reason: "no -----BEGIN CERTIFICATE----- section".into(),
        });
    }
    Ok(chain)
}

fn read_bounded(path: &Path, secret: bool) -> Result<Vec<u8>, TlsError> {
    let name = path.display().to_string();
    let io = |source| TlsError::Io {
        path: name.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    if secret {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = metadata.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(TlsError::NotPrivate { path: name, mode });
            }
        }
    }
    if metadata.len() > MAX_PEM_FILE {
        return Err(TlsError::TooLarge { path: name });
    }
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_PEM_FILE {
        return Err(TlsError::TooLarge { path: name });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn pair() -> (String, String) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        (cert.cert.pem(), cert.key_pair.serialize_pem())
    }

    #[test]
    fn a_certificate_and_its_private_key_make_a_server_set_up() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair();
        let cert = write(dir.path(), "cert.pem", &cert, 0o644);
        let key = write(dir.path(), "key.pem", &key, 0o600);
        let args = TlsArgs {
            tls_cert: Some(cert),
            tls_key: Some(key),
        };
        assert!(args.load().unwrap().is_some());
        assert!(TlsArgs::default().load().unwrap().is_none());
    }

    #[test]
    fn bad_files_are_refused_with_a_reason_and_the_key_is_never_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_text, key_text) = pair();
        let cert = write(dir.path(), "cert.pem", &cert_text, 0o644);
        let key = write(dir.path(), "key.pem", &key_text, 0o600);
        let open_key = write(dir.path(), "open.pem", &key_text, 0o640);
        let (_, other_key) = pair();
        let other_key = write(dir.path(), "other.pem", &other_key, 0o600);
        // A key file that is almost a key: its body must not be repeated.
        let body: String = key_text.lines().nth(1).unwrap().to_owned();
        let broken = write(
            dir.path(),
            "broken.pem",
            &key_text.replace(&body, &format!("{body}!")),
            0o600,
        );
        // A private file that holds a certificate, not a key.
        let cert_as_key = write(dir.path(), "cert-as-key.pem", &cert_text, 0o600);
        let missing = dir.path().join("missing.pem");
        let cases = [
            (cert.clone(), open_key, "chmod 600"),
            (cert.clone(), broken, "no PEM private key"),
            (cert.clone(), cert_as_key, "no PEM private key"),
            (key.clone(), key.clone(), "no PEM certificate"),
            (cert.clone(), missing, "missing.pem"),
            (cert.clone(), other_key, "cannot be used"),
        ];
        for (cert, key, expected) in cases {
            let error = ServerTls::from_pem_files(&cert, &key)
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{error}");
            assert!(!error.contains(&body[..20]), "{error}");
        }
        let half = TlsArgs {
            tls_cert: Some(cert),
            tls_key: None,
        };
        assert!(matches!(half.load(), Err(TlsError::Incomplete)));
    }
}
