//! Test helpers: keys, JWKS, hand-made bad tokens, a small PKI and a TLS client, all generated
//! with OpenSSL at test time (nothing secret is checked in). Public with the `test-util` feature,
//! for the end-to-end tests of the `rex` package.

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509NameBuilder};
use serde_json::{Map, Value, json};

use crate::encoding::b64url_encode;
use crate::jwk::public_jwk_members;

pub fn rsa_key() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
}

pub fn ec_p384_key() -> PKey<Private> {
    PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(Nid::SECP384R1).unwrap()).unwrap()).unwrap()
}

pub fn ec_p256_key() -> PKey<Private> {
    PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap()).unwrap()
}

pub fn jwk_of(key: &PKey<Private>, kid: &str) -> Value {
    let mut members = public_jwk_members(key).unwrap();
    members.insert("kid".into(), kid.into());
    Value::Object(members)
}

pub fn jwks_of(keys: &[(&PKey<Private>, &str)]) -> Value {
    json!({ "keys": keys.iter().map(|(k, kid)| jwk_of(k, kid)).collect::<Vec<_>>() })
}

/// `header.payload.` with the given `alg` and no signature.
pub fn unsigned_token(alg: &str, claims: &Map<String, Value>) -> String {
    let header = b64url_encode(serde_json::to_vec(&json!({ "alg": alg, "typ": "JWT" })).unwrap());
    format!("{header}.{}.", b64url_encode(serde_json::to_vec(claims).unwrap()))
}

/// A correctly HMAC-signed token (HS256/384/512) with `secret` as the key.
pub fn hs256_token(alg: &str, kid: Option<&str>, claims: &Map<String, Value>, secret: &[u8]) -> String {
    let mut header = json!({ "alg": alg, "typ": "JWT" });
    if let Some(kid) = kid {
        header["kid"] = kid.into();
    }
    let input = format!(
        "{}.{}",
        b64url_encode(serde_json::to_vec(&header).unwrap()),
        b64url_encode(serde_json::to_vec(claims).unwrap())
    );
    let digest = match alg {
        "HS384" => MessageDigest::sha384(),
        "HS512" => MessageDigest::sha512(),
        _ => MessageDigest::sha256(),
    };
    let key = PKey::hmac(secret).unwrap();
    let mut signer = Signer::new(digest, &key).unwrap();
    let mac = signer.sign_oneshot_to_vec(input.as_bytes()).unwrap();
    format!("{input}.{}", b64url_encode(mac))
}

/// A certificate and its key.
pub struct Issued {
    pub cert: X509,
    pub key: PKey<Private>,
}

impl Issued {
    pub fn cert_pem(&self) -> Vec<u8> {
        self.cert.to_pem().unwrap()
    }
    pub fn key_pem(&self) -> Vec<u8> {
        self.key.private_key_to_pem_pkcs8().unwrap()
    }
    pub fn sha256_hex(&self) -> String {
        crate::encoding::hex_lower(&self.cert.digest(MessageDigest::sha256()).unwrap())
    }
}

pub enum CertKind<'a> {
    Ca,
    Server,
    Client { san_uri: &'a str },
}

/// Issues a certificate for `cn`, signed by `issuer` (self-signed when `None`).
pub fn issue(cn: &str, kind: CertKind<'_>, issuer: Option<&Issued>) -> Issued {
    let key = ec_p384_key();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut builder = X509::builder().unwrap();
    builder.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(127, MsbOption::MAYBE_ZERO, false).unwrap();
    builder.set_serial_number(&serial.to_asn1_integer().unwrap()).unwrap();
    builder.set_subject_name(&name).unwrap();
    builder.set_issuer_name(issuer.map_or(&name, |i| i.cert.subject_name())).unwrap();
    builder.set_pubkey(&key).unwrap();
    builder.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
    builder.set_not_after(&Asn1Time::days_from_now(2).unwrap()).unwrap();
    let context_cert = issuer.map(|i| &i.cert);
    match kind {
        CertKind::Ca => {
            builder.append_extension(BasicConstraints::new().critical().ca().build().unwrap()).unwrap();
            builder.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build().unwrap()).unwrap();
        }
        CertKind::Server => {
            builder.append_extension(BasicConstraints::new().build().unwrap()).unwrap();
            builder.append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap()).unwrap();
            let san = SubjectAlternativeName::new()
                .dns("localhost")
                .ip("127.0.0.1")
                .build(&builder.x509v3_context(context_cert.map(|c| c.as_ref()), None))
                .unwrap();
            builder.append_extension(san).unwrap();
        }
        CertKind::Client { san_uri } => {
            builder.append_extension(BasicConstraints::new().build().unwrap()).unwrap();
            builder.append_extension(ExtendedKeyUsage::new().client_auth().build().unwrap()).unwrap();
            let san = SubjectAlternativeName::new()
                .uri(san_uri)
                .dns(&format!("{cn}.example"))
                .build(&builder.x509v3_context(context_cert.map(|c| c.as_ref()), None))
                .unwrap();
            builder.append_extension(san).unwrap();
        }
    }
    let ski =
        SubjectKeyIdentifier::new().build(&builder.x509v3_context(context_cert.map(|c| c.as_ref()), None)).unwrap();
    builder.append_extension(ski).unwrap();
    builder.sign(issuer.map_or(&key, |i| &i.key), MessageDigest::sha384()).unwrap();
    Issued { cert: builder.build(), key }
}

/// Sends `request` (raw HTTP/1.1 bytes, with `Connection: close`) over a fresh TLS connection
/// that trusts `ca` and presents `client`'s certificate, and returns the raw response.
pub async fn tls_exchange(
    addr: std::net::SocketAddr,
    ca: &Issued,
    client: Option<&Issued>,
    request: &[u8],
) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut builder = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client()).unwrap();
    builder.cert_store_mut().add_cert(ca.cert.clone()).unwrap();
    if let Some(client) = client {
        builder.set_certificate(&client.cert).unwrap();
        builder.set_private_key(&client.key).unwrap();
    }
    let ssl = builder.build().configure().unwrap().into_ssl("localhost").unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut stream = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    std::pin::Pin::new(&mut stream).connect().await.map_err(|e| format!("handshake: {e}"))?;
    stream.write_all(request).await.map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    let read = stream.read_to_end(&mut response).await;
    if response.is_empty() {
        return Err(format!("no response: {read:?}"));
    }
    Ok(String::from_utf8_lossy(&response).into_owned())
}
