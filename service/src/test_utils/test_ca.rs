//! A certificate authority made by a test: [`TestCa`].
//!
//! One call writes a fresh CA and a server certificate it signed, for
//! `localhost` and `127.0.0.1`, as PEM files: hand `cert_pem`/`key_pem` to a
//! server (`--tls-cert`/`--tls-key`, or [`TestCa::server_tls`] in-process)
//! and `ca_pem` to its clients (`--ca-file`, or [`TestCa::trusted_cas`]).
//! The keys are new each time and never leave the test's directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use lockstep_api::client::TrustedCas;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::tls::ServerTls;

/// A CA and one server certificate, as PEM files in `dir`: see the
/// [module docs](self).
///
/// ```no_run
/// # use lockstep_service::test_utils::TestCa;
/// let dir = tempfile::tempdir().unwrap();
/// let ca = TestCa::new(dir.path());
/// // A server process: `lockstep-node --dev --tls-cert <cert> --tls-key <key>`.
/// let server_args = ca.server_args();
/// // Its clients: `--ca-file <ca>`, or in-process
/// // `ClientOptions::new(timeout).with_cas(Some(ca.trusted_cas()))`,
/// // calling `https://127.0.0.1:<port>` or `https://localhost:<port>`.
/// let cas = ca.trusted_cas();
/// # let _ = (server_args, cas);
/// ```
#[derive(Debug, Clone)]
pub struct TestCa {
    /// The directory the three files are in.
    pub dir: PathBuf,
    /// `<dir>/ca.pem`: the CA's certificate, what clients trust
    /// (`--ca-file`).
    pub ca_pem: PathBuf,
    /// `<dir>/cert.pem`: the server's certificate, for the DNS name
    /// `localhost` and the IP address `127.0.0.1`, signed by the CA
    /// (`--tls-cert`).
    pub cert_pem: PathBuf,
    /// `<dir>/key.pem`: the server certificate's private key, mode 0600
    /// (`--tls-key`).
    pub key_pem: PathBuf,
}

impl TestCa {
    /// A new CA and server certificate written into `dir` (created if
    /// missing) as `ca.pem`, `cert.pem` and `key.pem`; files of an earlier
    /// `TestCa` there are replaced, so give each CA its own directory.
    /// Panics if they cannot be made or written.
    pub fn new(dir: &Path) -> TestCa {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let (ca_cert, ca_key) = {
            let mut params = CertificateParams::new(Vec::new())
                .unwrap_or_else(|e| panic!("test CA parameters: {e}"));
            params.distinguished_name = name("Lockstep test CA");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let key = KeyPair::generate().unwrap_or_else(|e| panic!("test CA key: {e}"));
            let cert = params
                .self_signed(&key)
                .unwrap_or_else(|e| panic!("test CA certificate: {e}"));
            (cert, key)
        };
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap_or_else(|e| panic!("test server certificate parameters: {e}"));
        params.distinguished_name = name("localhost");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("test server key: {e}"));
        let cert = params
            .signed_by(&key, &ca_cert, &ca_key)
            .unwrap_or_else(|e| panic!("test server certificate: {e}"));
        let ca = TestCa {
            dir: dir.to_path_buf(),
            ca_pem: dir.join("ca.pem"),
            cert_pem: dir.join("cert.pem"),
            key_pem: dir.join("key.pem"),
        };
        write(&ca.ca_pem, &ca_cert.pem(), 0o644);
        write(&ca.cert_pem, &cert.pem(), 0o644);
        write(&ca.key_pem, &key.serialize_pem(), 0o600);
        ca
    }

    /// The server's TLS set-up, for a server started in the test's process
    /// (`NodeConfig::rpc_tls`, the event system's `Config::tls`).
    pub fn server_tls(&self) -> ServerTls {
        ServerTls::from_pem_files(&self.cert_pem, &self.key_pem)
            .unwrap_or_else(|e| panic!("the test CA's server certificate: {e}"))
    }

    /// The CA as a client trusts it
    /// (`ClientOptions::with_cas(Some(ca.trusted_cas()))`).
    pub fn trusted_cas(&self) -> TrustedCas {
        TrustedCas::from_pem_file(&self.ca_pem).unwrap_or_else(|e| panic!("the test CA: {e}"))
    }

    /// `--tls-cert <cert.pem> --tls-key <key.pem>`, for a server process.
    pub fn server_args(&self) -> [std::ffi::OsString; 4] {
        [
            "--tls-cert".into(),
            self.cert_pem.clone().into(),
            "--tls-key".into(),
            self.key_pem.clone().into(),
        ]
    }

    /// `--ca-file <ca.pem>`, for a client process.
    pub fn client_args(&self) -> [std::ffi::OsString; 2] {
        ["--ca-file".into(), self.ca_pem.clone().into()]
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// Writes `text` to `path` with `mode` (set on creation, and again for a
/// file that was there already).
fn write(path: &Path, text: &str, mode: u32) {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let written = options.open(path).and_then(|mut file| {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        file.write_all(text.as_bytes())
    });
    written.unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use jsonrpsee::core::client::ClientT;
    use jsonrpsee::rpc_params;
    use jsonrpsee::RpcModule;
    use lockstep_api::client::{self, ClientOptions};

    use super::*;
    use crate::rpc_metrics::RpcTimes;
    use crate::rpc_server::{self, RpcLimits};

    const LIMITS: RpcLimits = RpcLimits {
        max_request_bytes: 64 * 1024,
        max_response_bytes: 64 * 1024,
        max_connections: 16,
        max_subscriptions_per_connection: 4,
        max_batch_len: 4,
        rate_limit: None,
    };

    /// A server of one method, `test_hello`, over TLS.
    async fn server(tls: ServerTls) -> (jsonrpsee::server::ServerHandle, SocketAddr) {
        let mut module = RpcModule::new(());
        module
            .register_method("test_hello", |_, _, _| "hello")
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        rpc_server::start(addr, LIMITS, module, RpcTimes::default(), Some(tls))
            .await
            .unwrap()
    }

    fn options(cas: Option<TrustedCas>) -> ClientOptions {
        ClientOptions::new(Duration::from_secs(10)).with_cas(cas)
    }

    #[test]
    fn the_files_are_pem_and_only_the_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(&dir.path().join("tls"));
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ca.key_pem), 0o600);
        assert_eq!(mode(&ca.cert_pem), 0o644);
        assert_eq!(mode(&ca.ca_pem), 0o644);
        for (path, label) in [
            (&ca.ca_pem, "CERTIFICATE"),
            (&ca.cert_pem, "CERTIFICATE"),
            (&ca.key_pem, "PRIVATE KEY"),
        ] {
            let text = std::fs::read_to_string(path).unwrap();
            assert!(
                text.starts_with(&format!("-----BEGIN {label}-----")),
                "{}",
                path.display()
            );
        }
        // The CA is not the server's certificate.
        assert_ne!(
            std::fs::read(&ca.ca_pem).unwrap(),
            std::fs::read(&ca.cert_pem).unwrap()
        );
    }

    #[tokio::test]
    async fn a_client_trusting_the_ca_reaches_the_server_by_name_and_address_and_others_are_refused(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(&dir.path().join("ca"));
        let other = TestCa::new(&dir.path().join("other"));
        let (handle, addr) = server(ca.server_tls()).await;
        let trusting = options(Some(ca.trusted_cas()));
        for host in ["127.0.0.1", "localhost"] {
            let url = format!("https://{host}:{}", addr.port());
            let http = client::http_with(&url, &trusting).unwrap();
            let answer: String = http.request("test_hello", rpc_params![]).await.unwrap();
            assert_eq!(answer, "hello", "{url}");
            let ws = client::ws_with(&url, &trusting).await.unwrap();
            let answer: String = ws.request("test_hello", rpc_params![]).await.unwrap();
            assert_eq!(answer, "hello", "{url}");
        }
        let url = format!("https://127.0.0.1:{}", addr.port());
        let stranger = options(Some(other.trusted_cas()));
        let refused = client::http_with(&url, &stranger)
            .unwrap()
            .request::<String, _>("test_hello", rpc_params![])
            .await
            .unwrap_err();
        let described = client::describe(&refused);
        assert!(described.contains("certificate"), "{described}");
        let refused = client::ws_with(&url, &stranger).await.unwrap_err();
        let described = client::describe(&refused);
        assert!(described.contains("certificate"), "{described}");
        handle.stop().unwrap();
    }
}
