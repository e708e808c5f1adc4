//! The optional mTLS listener: HTTP over the connections `rex_auth::MtlsAcceptor` accepts, each
//! request carrying the partner identity of its connection's leaf certificate.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use axum::serve::{IncomingStream, Listener};
use rex_auth::{MtlsAcceptor, PeerIdentity};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_openssl::SslStream;
use tower::Service;

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait in the kernel backlog.
pub const MAX_PENDING_HANDSHAKES: usize = 256;

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
pub async fn serve<F>(listener: MtlsListener, router: Router, shutdown: F) -> io::Result<()>
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
    use std::path::Path;

    use axum::Extension;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;
    use rex_auth::testutil::{CertKind, Issued, issue};
    use rex_auth::{AuthConfig, Authenticator, InMemoryReplayCache, TokenEndpoint, TokenRequest, TokenSigner};

    use super::*;

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
        rex_auth::testutil::tls_exchange(addr, &pki.ca, client, request.as_bytes()).await
    }

    fn body(response: &str) -> &str {
        response.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default()
    }

    #[tokio::test]
    async fn serve_mtls_end_to_end_with_certificate_bound_partners() {
        let pki = pki();
        let a_key = rex_auth::SigningKey::new(rex_auth::testutil::ec_p384_key()).unwrap();
        let b_key = rex_auth::SigningKey::new(rex_auth::testutil::ec_p384_key()).unwrap();
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
        let token_for = |key: &rex_auth::SigningKey, id: &str| {
            let assertion = rex_auth::mint_client_assertion(key, id, token_url, now).unwrap();
            TokenRequest {
                grant_type: Some("client_credentials".into()),
                client_assertion_type: Some(rex_auth::CLIENT_ASSERTION_TYPE.into()),
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
        let server = tokio::spawn(serve(listener, router, async move {
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
