//! The optional mTLS listener: TLS with required client certificates (OpenSSL via
//! tokio-openssl), where the partner identity is read from the client's own LEAF certificate.
//!
//! Why not axum-server: its OpenSSL `TlsInfo` reports the CA of the chain instead of the leaf, so
//! every partner under one CA would look the same. Here the identity is
//! `ssl().peer_certificate()`, which on the server side is always the client's leaf.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use axum::serve::{IncomingStream, Listener};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::ssl::{AlpnError, Ssl, SslAcceptor, SslMethod, SslVerifyMode, select_next_proto};
use openssl::stack::Stack;
use openssl::x509::{X509, X509Name, X509Ref, X509VerifyResult};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_openssl::SslStream;
use tower::Service;

use crate::encoding::{b64url_encode, hex_decode, hex_lower};

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait in the kernel backlog.
pub const MAX_PENDING_HANDSHAKES: usize = 256;

/// The client identity of an mTLS connection, taken from its leaf certificate. Inserted as a
/// request extension by `serve_mtls`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    /// SHA-256 of the leaf certificate's DER, 64 lowercase hex digits (the value configured as a
    /// partner's `client_cert_sha256`).
    pub sha256_fingerprint_hex: String,
    /// Subject alternative names, prefixed by kind: `DNS:`, `URI:`, `IP:`, `email:`.
    pub subject_alt_names: Vec<String>,
}

impl PeerIdentity {
    pub fn from_certificate(cert: &X509Ref) -> Result<PeerIdentity, openssl::error::ErrorStack> {
        let digest = cert.digest(MessageDigest::sha256())?;
        let mut subject_alt_names = Vec::new();
        for name in cert.subject_alt_names().iter().flatten() {
            if let Some(dns) = name.dnsname() {
                subject_alt_names.push(format!("DNS:{dns}"));
            } else if let Some(uri) = name.uri() {
                subject_alt_names.push(format!("URI:{uri}"));
            } else if let Some(email) = name.email() {
                subject_alt_names.push(format!("email:{email}"));
            } else if let Some(ip) = name.ipaddress() {
                let ip = match ip.len() {
                    4 => <[u8; 4]>::try_from(ip).map(|b| std::net::IpAddr::from(b).to_string()).ok(),
                    16 => <[u8; 16]>::try_from(ip).map(|b| std::net::IpAddr::from(b).to_string()).ok(),
                    _ => None,
                };
                subject_alt_names.extend(ip.map(|ip| format!("IP:{ip}")));
            }
        }
        Ok(PeerIdentity { sha256_fingerprint_hex: hex_lower(&digest), subject_alt_names })
    }

    /// The RFC 8705 `x5t#S256` form of the fingerprint (base64url).
    pub fn x5t_s256(&self) -> String {
        b64url_encode(hex_decode(&self.sha256_fingerprint_hex).unwrap_or_default())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
    #[error("the client presented no certificate")]
    NoClientCertificate,
    #[error("the client certificate did not verify: {0}")]
    Unverified(String),
    #[error("TLS handshake timed out")]
    Timeout,
}

/// Accepts TLS connections that must present a client certificate issued by the configured CAs.
#[derive(Clone)]
pub struct MtlsAcceptor {
    acceptor: Arc<SslAcceptor>,
}

impl MtlsAcceptor {
    /// `cert_chain_pem`: the server certificate followed by any intermediates; `key_pem`: its
    /// private key; `client_ca_pem`: the CA certificates partner client certificates chain to.
    pub fn from_pem(cert_chain_pem: &[u8], key_pem: &[u8], client_ca_pem: &[u8]) -> Result<MtlsAcceptor, TlsError> {
        let config = |what: &str, e: openssl::error::ErrorStack| TlsError::Config(format!("{what}: {e}"));
        let chain = X509::stack_from_pem(cert_chain_pem).map_err(|e| config("server certificate", e))?;
        let (leaf, intermediates) =
            chain.split_first().ok_or_else(|| TlsError::Config("no server certificate in the PEM".into()))?;
        let key = PKey::private_key_from_pem(key_pem).map_err(|e| config("server key", e))?;
        let cas = X509::stack_from_pem(client_ca_pem).map_err(|e| config("client CA bundle", e))?;
        if cas.is_empty() {
            return Err(TlsError::Config("the client CA bundle holds no certificate".into()));
        }
        let mut builder =
            SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).map_err(|e| config("TLS context", e))?;
        builder.set_certificate(leaf).map_err(|e| config("server certificate", e))?;
        for cert in intermediates {
            builder.add_extra_chain_cert(cert.clone()).map_err(|e| config("server chain", e))?;
        }
        builder.set_private_key(&key).map_err(|e| config("server key", e))?;
        builder.check_private_key().map_err(|e| config("server key does not match the certificate", e))?;
        let mut names = Stack::<X509Name>::new().map_err(|e| config("client CA list", e))?;
        for ca in &cas {
            builder.cert_store_mut().add_cert(ca.clone()).map_err(|e| config("client CA bundle", e))?;
            names
                .push(ca.subject_name().to_owned().map_err(|e| config("client CA list", e))?)
                .map_err(|e| config("client CA list", e))?;
        }
        builder.set_client_ca_list(names);
        builder.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
        builder.set_alpn_select_callback(|_, client| {
            select_next_proto(b"\x02h2\x08http/1.1", client).ok_or(AlpnError::NOACK)
        });
        Ok(MtlsAcceptor { acceptor: Arc::new(builder.build()) })
    }

    pub fn from_files(cert_chain: &Path, key: &Path, client_ca: &Path) -> Result<MtlsAcceptor, TlsError> {
        let read =
            |p: &Path| std::fs::read(p).map_err(|e| TlsError::Config(format!("cannot read {}: {e}", p.display())));
        MtlsAcceptor::from_pem(&read(cert_chain)?, &read(key)?, &read(client_ca)?)
    }

    /// Performs the handshake and returns the stream with the identity of the client's leaf
    /// certificate. No timeout here: `MtlsListener` applies `HANDSHAKE_TIMEOUT`.
    pub async fn accept(&self, tcp: TcpStream) -> Result<(SslStream<TcpStream>, PeerIdentity), TlsError> {
        let ssl = Ssl::new(self.acceptor.context()).map_err(|e| TlsError::Config(e.to_string()))?;
        let mut stream = SslStream::new(ssl, tcp).map_err(|e| TlsError::Config(e.to_string()))?;
        Pin::new(&mut stream).accept().await.map_err(|e| TlsError::Handshake(e.to_string()))?;
        let ssl = stream.ssl();
        if ssl.verify_result() != X509VerifyResult::OK {
            return Err(TlsError::Unverified(ssl.verify_result().error_string().to_owned()));
        }
        // On the server side, peer_certificate() is the client's leaf (peer_cert_chain() would
        // not include it, and its last entry is the CA side).
        let leaf = ssl.peer_certificate().ok_or(TlsError::NoClientCertificate)?;
        let identity = PeerIdentity::from_certificate(&leaf).map_err(|e| TlsError::Handshake(e.to_string()))?;
        Ok((stream, identity))
    }
}

/// A TLS stream with the client identity established by its handshake.
pub struct MtlsStream {
    inner: SslStream<TcpStream>,
    identity: PeerIdentity,
}

impl MtlsStream {
    pub fn identity(&self) -> &PeerIdentity {
        &self.identity
    }
}

impl AsyncRead for MtlsStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for MtlsStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// An `axum::serve` listener yielding only connections whose client certificate verified.
/// Handshakes run in their own tasks (with `HANDSHAKE_TIMEOUT`), so a slow or silent client
/// cannot hold up others; failed handshakes are logged at debug level and dropped.
pub struct MtlsListener {
    ready: mpsc::Receiver<(MtlsStream, SocketAddr)>,
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MtlsListener {
    pub fn new(tcp: TcpListener, acceptor: MtlsAcceptor) -> io::Result<MtlsListener> {
        let local_addr = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let permits = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
        let task = tokio::spawn(async move {
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else { return };
                let (tcp, remote) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Usually EMFILE/ENFILE: back off instead of spinning (as axum does).
                        tracing::warn!(error = %e, "mTLS listener accept failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok((inner, identity))) => {
                            let _ = tx.send((MtlsStream { inner, identity }, remote)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%remote, error = %e, "mTLS handshake refused"),
                        Err(_) => tracing::debug!(%remote, "mTLS handshake timed out"),
                    }
                });
            }
        });
        Ok(MtlsListener { ready, local_addr, task })
    }
}

impl Drop for MtlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener for MtlsListener {
    type Io = MtlsStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (MtlsStream, SocketAddr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept task only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}

/// Serves `router` over mTLS connections until `shutdown` completes. Every request carries the
/// connection's `PeerIdentity` and `ConnectInfo<SocketAddr>` as extensions.
pub async fn serve_mtls<F>(listener: MtlsListener, router: Router, shutdown: F) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    axum::serve(listener, MakePeerService { router }).with_graceful_shutdown(shutdown).await
}

#[derive(Clone)]
struct MakePeerService {
    router: Router,
}

impl<'a> Service<IncomingStream<'a, MtlsListener>> for MakePeerService {
    type Response = PeerService;
    type Error = Infallible;
    type Future = std::future::Ready<Result<PeerService, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, stream: IncomingStream<'a, MtlsListener>) -> Self::Future {
        std::future::ready(Ok(PeerService {
            router: self.router.clone(),
            peer: stream.io().identity().clone(),
            remote: *stream.remote_addr(),
        }))
    }
}

/// The router for one connection, adding its identity to each request.
#[derive(Clone)]
struct PeerService {
    router: Router,
    peer: PeerIdentity,
    remote: SocketAddr,
}

impl Service<Request> for PeerService {
    type Response = Response;
    type Error = Infallible;
    type Future = <Router as Service<Request>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        request.extensions_mut().insert(self.peer.clone());
        request.extensions_mut().insert(ConnectInfo(self.remote));
        self.router.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{CertKind, Issued, issue};
    use crate::{AuthConfig, Authenticator, InMemoryReplayCache, TokenEndpoint, TokenRequest, TokenSigner};
    use axum::Extension;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;
    use tokio::io::AsyncWriteExt;

    struct Pki {
        ca: Issued,
        server: Issued,
        client_a: Issued,
        client_b: Issued,
        rogue: Issued,
    }

    fn pki() -> Pki {
        let ca = issue("rex test CA", CertKind::Ca, None);
        let server = issue("localhost", CertKind::Server, Some(&ca));
        let client_a = issue("hospital-a", CertKind::Client { san_uri: "urn:rex:partner:hospital-a" }, Some(&ca));
        let client_b = issue("hospital-b", CertKind::Client { san_uri: "urn:rex:partner:hospital-b" }, Some(&ca));
        let rogue_ca = issue("rogue CA", CertKind::Ca, None);
        let rogue = issue("hospital-a", CertKind::Client { san_uri: "urn:rex:partner:hospital-a" }, Some(&rogue_ca));
        Pki { ca, server, client_a, client_b, rogue }
    }

    /// GET `path` over a fresh mTLS connection, returning the raw HTTP response.
    async fn get_over_tls(
        addr: SocketAddr,
        pki: &Pki,
        client: Option<&Issued>,
        path: &str,
        bearer: Option<&str>,
    ) -> Result<String, String> {
        let auth = bearer.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n");
        crate::testutil::tls_exchange(addr, &pki.ca, client, request.as_bytes()).await
    }

    fn body(response: &str) -> &str {
        response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default()
    }

    #[tokio::test]
    async fn acceptor_reads_the_leaf_certificate() {
        let pki = pki();
        let acceptor =
            MtlsAcceptor::from_pem(&pki.server.cert_pem(), &pki.server.key_pem(), &pki.ca.cert_pem()).unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (socket, _) = tcp.accept().await.unwrap();
            let (mut stream, identity) = acceptor.accept(socket).await.unwrap();
            stream.write_all(b"hi").await.unwrap();
            stream.shutdown().await.ok();
            identity
        });
        let _ = get_over_tls(addr, &pki, Some(&pki.client_a), "/", None).await;
        let identity = server.await.unwrap();
        assert_eq!(identity.sha256_fingerprint_hex, pki.client_a.sha256_hex());
        assert_ne!(identity.sha256_fingerprint_hex, pki.ca.sha256_hex(), "the leaf, not the CA");
        assert_eq!(identity.subject_alt_names, ["URI:urn:rex:partner:hospital-a", "DNS:hospital-a.example"]);
        assert_eq!(identity.x5t_s256().len(), 43);
    }

    #[test]
    fn configuration_errors() {
        let pki = pki();
        let (cert, key, ca) = (pki.server.cert_pem(), pki.server.key_pem(), pki.ca.cert_pem());
        assert!(MtlsAcceptor::from_pem(b"", &key, &ca).is_err());
        assert!(MtlsAcceptor::from_pem(&cert, &pki.client_a.key_pem(), &ca).is_err(), "key does not match");
        assert!(MtlsAcceptor::from_pem(&cert, &key, b"").is_err(), "no client CA");
        assert!(MtlsAcceptor::from_files(Path::new("/nonexistent"), Path::new("/x"), Path::new("/y")).is_err());
    }

    #[tokio::test]
    async fn serve_mtls_end_to_end_with_certificate_bound_partners() {
        let pki = pki();
        let a_key = crate::SigningKey::new(crate::testutil::ec_p384_key()).unwrap();
        let b_key = crate::SigningKey::new(crate::testutil::ec_p384_key()).unwrap();
        let config = AuthConfig::from_toml(
            &format!(
                r#"
[[partner]]
id = "hospital-a"
name = "A"
organization_identifier = {{ system = "urn:x", value = "a" }}
jwks = '{}'
scopes = ["system/Task.rs"]
client_cert_sha256 = "{}"

[[partner]]
id = "hospital-b"
name = "B"
organization_identifier = {{ system = "urn:x", value = "b" }}
jwks = '{}'
scopes = ["system/Task.rs"]
client_cert_sha256 = "{}"
"#,
                a_key.public_jwks(),
                pki.client_a.sha256_hex(),
                b_key.public_jwks(),
                pki.client_b.sha256_hex()
            ),
            Path::new("."),
        )
        .unwrap();
        let partners = Arc::new(config.partners);
        let signer = Arc::new(TokenSigner::generate("https://rex.test/fhir").unwrap());
        let auth = Authenticator::new(partners.clone(), signer.clone(), None).unwrap();
        let token_url = "https://rex.test/auth/token";
        let endpoint = TokenEndpoint {
            partners,
            signer,
            token_url: token_url.into(),
            replay: Arc::new(InMemoryReplayCache::default()),
        };
        let now = 1_700_000_000;
        let token_for = |key: &crate::SigningKey, id: &str| {
            let assertion = crate::mint_client_assertion(key, id, token_url, now).unwrap();
            TokenRequest {
                grant_type: Some("client_credentials".into()),
                client_assertion_type: Some(crate::CLIENT_ASSERTION_TYPE.into()),
                client_assertion: Some(assertion),
                scope: Some("system/Task.rs".into()),
                client_id: None,
            }
        };
        // Tokens issued without mTLS (unbound), so the connection check is what refuses B on A.
        let token_a = endpoint.exchange(&token_for(&a_key, "hospital-a"), None, now).await.unwrap().access_token;
        let token_b = endpoint.exchange(&token_for(&b_key, "hospital-b"), None, now).await.unwrap().access_token;

        async fn whoami(
            Extension(peer): Extension<PeerIdentity>,
            ConnectInfo(remote): ConnectInfo<SocketAddr>,
        ) -> String {
            assert!(remote.ip().is_loopback());
            format!("{}|{}", peer.sha256_fingerprint_hex, peer.subject_alt_names.join(","))
        }
        async fn protected(
            State(auth): State<Authenticator>,
            Extension(peer): Extension<PeerIdentity>,
            headers: HeaderMap,
        ) -> (StatusCode, String) {
            let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
            match auth.authenticate(authorization, Some(&peer), 1_700_000_000) {
                Ok(principal) => (StatusCode::OK, principal.partner_id().unwrap_or_default().to_owned()),
                Err(e) => (StatusCode::from_u16(e.status()).unwrap(), e.to_string()),
            }
        }
        let router = Router::new().route("/whoami", get(whoami)).route("/protected", get(protected)).with_state(auth);

        let acceptor =
            MtlsAcceptor::from_pem(&pki.server.cert_pem(), &pki.server.key_pem(), &pki.ca.cert_pem()).unwrap();
        let listener = MtlsListener::new(TcpListener::bind("127.0.0.1:0").await.unwrap(), acceptor).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_mtls(listener, router, async move {
            let _ = stopped.await;
        }));

        // Each client is seen with its own leaf fingerprint and SANs, never the CA's.
        for client in [&pki.client_a, &pki.client_b] {
            let response = get_over_tls(addr, &pki, Some(client), "/whoami", None).await.unwrap();
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            let (fingerprint, sans) = body(&response).split_once('|').unwrap();
            assert_eq!(fingerprint, client.sha256_hex());
            assert_ne!(fingerprint, pki.ca.sha256_hex());
            assert!(sans.starts_with("URI:urn:rex:partner:hospital-"), "{sans}");
        }
        // A silent client does not block others (handshakes run concurrently).
        let _silent = TcpStream::connect(addr).await.unwrap();

        // The right partner's token on its connection works; another partner's is refused.
        let ok = get_over_tls(addr, &pki, Some(&pki.client_a), "/protected", Some(&token_a)).await.unwrap();
        assert!(ok.starts_with("HTTP/1.1 200") && body(&ok) == "hospital-a", "{ok}");
        let refused = get_over_tls(addr, &pki, Some(&pki.client_a), "/protected", Some(&token_b)).await.unwrap();
        assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
        assert!(body(&refused).contains("not registered for this partner"), "{refused}");
        let ok_b = get_over_tls(addr, &pki, Some(&pki.client_b), "/protected", Some(&token_b)).await.unwrap();
        assert!(ok_b.starts_with("HTTP/1.1 200") && body(&ok_b) == "hospital-b", "{ok_b}");

        // No client certificate, or one from another CA: no HTTP response at all.
        for client in [None, Some(&pki.rogue)] {
            let result = get_over_tls(addr, &pki, client, "/whoami", None).await;
            assert!(result.is_err(), "{result:?}");
        }

        stop.send(()).unwrap();
        drop(_silent);
        tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
    }
}
