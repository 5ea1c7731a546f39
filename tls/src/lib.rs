//! TLS for herd's HTTP servers, the orchestrator's API and the agents' log endpoints (rustls,
//! the ring provider named explicitly so no process-wide provider has to be chosen): a
//! listener that hands axum connections whose
//! handshake is done (handshakes run beside the accept loop, each with a deadline, so a slow
//! or silent client holds up nobody), and `herd-orchestrator tls-init`, which makes a local
//! CA and a server certificate with rcgen (the demo's TLS; production brings its own PKI).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
pub use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;
use tracing::debug;

/// How long a client may take over its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server side from a PEM certificate chain and a PEM private key.
/// (Errors name the orchestrator's and agent's flags, `--tls-cert` and `--tls-key`.)
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("--tls-cert {}: cannot read it", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("--tls-cert {}: not a PEM certificate chain", cert.display()))?;
    if chain.is_empty() {
        bail!("--tls-cert {}: no certificate in it", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("--tls-key {}: no PEM private key in it", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("--tls-cert and --tls-key do not make a usable certificate (does the key match?)")?;
    // NB: HTTP/1.1 only: the servers are built without HTTP/2, and a client that negotiated h2
    // would be reset.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepted connections, handshake done.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, ready) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = ready.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(TlsListener { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept loop only ends once this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Whether serving plain HTTP on `addr` needs `--insecure-http` (anything but loopback).
pub fn plain_needs_consent(addr: &SocketAddr) -> bool {
    !addr.ip().is_loopback()
}

/// Writes `ca.pem` (a new local CA), `server.pem` and `server.key` (a certificate for `names`:
/// DNS names or IP addresses, signed by that CA) into `dir`. Refuses to overwrite a CA.
pub fn init(dir: &Path, names: &[String]) -> Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
    if names.is_empty() {
        bail!("--name: give at least one DNS name or IP address the orchestrator is reached at");
    }
    let ca_path = dir.join("ca.pem");
    if ca_path.exists() {
        bail!("{} exists: tls-init never replaces a CA (clients trust it); remove the folder's files to start over", ca_path.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "herd local CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, names[0].clone());
    for n in names {
        params.subject_alt_names.push(match n.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(n.clone().try_into().with_context(|| format!("--name `{n}` is neither an IP address nor a DNS name"))?),
        });
    }
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    write_private(&dir.join("server.key"), key.serialize_pem().as_bytes())?;
    std::fs::write(dir.join("server.pem"), cert.pem())?;
    std::fs::write(&ca_path, ca_cert.pem())?;
    Ok(())
}

/// Writes a secret readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_makes_a_ca_and_a_certificate_the_server_loads_and_never_replaces_the_ca() -> Result<()> {
        let dir = tempfile::tempdir()?;
        init(dir.path(), &["127.0.0.1".into(), "localhost".into()])?;
        server_config(&dir.path().join("server.pem"), &dir.path().join("server.key"))?;
        let again = init(dir.path(), &["127.0.0.1".into()]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(again.contains("never replaces a CA"), "{again}");
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.path().join("server.key"))?.permissions());
        assert_eq!(mode & 0o777, 0o600);
        let bad = server_config(&dir.path().join("ca.pem"), &dir.path().join("nope.key")).err().map(|e| format!("{e:#}")).unwrap_or_default();
        assert!(bad.contains("--tls-key"), "{bad}");
        Ok(())
    }

    #[test]
    fn plain_http_off_loopback_needs_consent() {
        assert!(!plain_needs_consent(&"127.0.0.1:7480".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert!(plain_needs_consent(&"0.0.0.0:7480".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert!(plain_needs_consent(&"10.0.0.1:7480".parse().unwrap_or_else(|e| panic!("{e}"))));
    }
}
