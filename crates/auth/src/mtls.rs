//! mTLS partner identity: the TLS acceptor with required client certificates (OpenSSL via
//! tokio-openssl), where the partner identity is read from the client's own LEAF certificate.
//! rex-server's `mtls` module serves HTTP on the connections it accepts.
//!
//! Why not axum-server: its OpenSSL `TlsInfo` reports the CA of the chain instead of the leaf, so
//! every partner under one CA would look the same. Here the identity is
//! `ssl().peer_certificate()`, which on the server side is always the client's leaf.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::ssl::{AlpnError, Ssl, SslAcceptor, SslMethod, SslVerifyMode, select_next_proto};
use openssl::stack::Stack;
use openssl::x509::{X509, X509Name, X509Ref, X509VerifyResult};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use crate::encoding::{b64url_encode, hex_decode, hex_lower};

/// The client identity of an mTLS connection, taken from its leaf certificate. Inserted as a
/// request extension by rex-server's mTLS listener.
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

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;
    use crate::testutil::{CertKind, Issued, issue};

    /// A CA, a server certificate and a partner's client certificate it issued.
    fn pki() -> (Issued, Issued, Issued) {
        let ca = issue("rex test CA", CertKind::Ca, None);
        let server = issue("localhost", CertKind::Server, Some(&ca));
        let client = issue("hospital-a", CertKind::Client { san_uri: "urn:rex:partner:hospital-a" }, Some(&ca));
        (ca, server, client)
    }

    #[tokio::test]
    async fn acceptor_reads_the_leaf_certificate() {
        let (ca, server, client) = pki();
        let acceptor = MtlsAcceptor::from_pem(&server.cert_pem(), &server.key_pem(), &ca.cert_pem()).unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let server_task = tokio::spawn(async move {
            let (socket, _) = tcp.accept().await.unwrap();
            let (mut stream, identity) = acceptor.accept(socket).await.unwrap();
            stream.write_all(b"hi").await.unwrap();
            stream.shutdown().await.ok();
            identity
        });
        let request = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        let _ = crate::testutil::tls_exchange(addr, &ca, Some(&client), request).await;
        let identity = server_task.await.unwrap();
        assert_eq!(identity.sha256_fingerprint_hex, client.sha256_hex());
        assert_ne!(identity.sha256_fingerprint_hex, ca.sha256_hex(), "the leaf, not the CA");
        assert_eq!(identity.subject_alt_names, ["URI:urn:rex:partner:hospital-a", "DNS:hospital-a.example"]);
        assert_eq!(identity.x5t_s256().len(), 43);
    }

    #[test]
    fn configuration_errors() {
        let (ca, server, client) = pki();
        let (cert, key, ca) = (server.cert_pem(), server.key_pem(), ca.cert_pem());
        assert!(MtlsAcceptor::from_pem(b"", &key, &ca).is_err());
        assert!(MtlsAcceptor::from_pem(&cert, &client.key_pem(), &ca).is_err(), "key does not match");
        assert!(MtlsAcceptor::from_pem(&cert, &key, b"").is_err(), "no client CA");
        assert!(MtlsAcceptor::from_files(Path::new("/nonexistent"), Path::new("/x"), Path::new("/y")).is_err());
    }
}
