//! The test harness: start rex on a fresh database and talk to it over HTTP.

use std::sync::{Arc, LazyLock};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use rex_referral::RoutingConfig;
use rex_server::{AppState, Config, RunConfig};
use rex_store::Store;
use rex_validation::Validator;
use serde_json::Value;
use sqlx::Connection;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The validator with rex's profiles, built once for all tests of the process.
pub static VALIDATOR: LazyLock<Arc<Validator>> = LazyLock::new(|| {
    let profiles = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    Arc::new(rex_server::validation::load_validator(&profiles, &[]).expect("the validator loads"))
});

pub fn partner_profiles() -> rex_server::validation::PartnerProfiles {
    let profiles = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    rex_server::validation::PartnerProfiles::load(&profiles).expect("partner profiles load")
}

/// Generates, for each async test function `name(app: TestApp)` in the calling module, a SQLite
/// test and an ignored PostgreSQL test; `@on sqlite_secured, postgres_secured;` picks other
/// `TestApp` constructors.
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        crate::support::backend_tests!(@on sqlite, postgres; $($name),*);
    };
    (@on $sqlite:ident, $postgres:ident; $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let app = crate::support::TestApp::$sqlite().await;
                    super::$name(&app).await;
                    app.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                #[ignore = "needs PostgreSQL: set REX_TEST_POSTGRES_URL and run with --ignored"]
                async fn $name() {
                    let app = crate::support::TestApp::$postgres().await;
                    super::$name(&app).await;
                    app.cleanup().await;
                }
            )*
        }
    };
}
pub(crate) use backend_tests;

/// The partners of a secured test server, with their private keys, and the staff identity
/// provider's development key.
pub struct TestAuth {
    pub token_url: String,
    /// Each partner's id, signing key and the key as PKCS#8 PEM.
    partner_keys: Vec<(String, rex_auth::SigningKey, Vec<u8>)>,
    staff_key: rex_auth::SigningKey,
    oidc: rex_auth::OidcConfig,
}

/// The security configuration of `rex serve` processes started by tests: one partner and the
/// staff identity provider, with their keys.
pub struct ProcessSecurity {
    /// The `security.toml` written.
    pub file: std::path::PathBuf,
    pub partner_key: rex_auth::SigningKey,
    pub staff_key: rex_auth::SigningKey,
    /// The staff key as PEM, for `rex token --key`.
    pub staff_pem: Vec<u8>,
}

/// Writes `folder/security.toml` for `partner` (all scopes) and a staff identity provider.
pub fn write_security_config(folder: &std::path::Path, partner: &str) -> ProcessSecurity {
    let (partner_key, _) = new_key();
    let (staff_key, staff_pem) = new_key();
    let file = folder.join("security.toml");
    std::fs::write(
        &file,
        format!(
            "[oidc]\nissuer = \"https://idp.test\"\naudience = \"rex\"\njwks = '{}'\n\n\
             [[partner]]\nid = \"{partner}\"\nname = \"Hospital Angeles\"\n\
             organization_identifier = {{ system = \"https://rex.example/partners\", value = \"{partner}\" }}\n\
             scopes = [\"system/*.cruds\"]\njwks = '{}'\n",
            staff_key.public_jwks(),
            partner_key.public_jwks()
        ),
    )
    .unwrap();
    ProcessSecurity { file, partner_key, staff_key, staff_pem }
}

/// Exchanges a partner's client assertion for an access token (every scope) at the token
/// endpoint `post_to`.
pub async fn exchange_assertion(client: &reqwest::Client, post_to: &str, assertion: &str) -> String {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", "client_credentials"),
            ("client_assertion_type", rex_auth::CLIENT_ASSERTION_TYPE),
            ("client_assertion", assertion),
            ("scope", "system/*.cruds"),
        ])
        .finish();
    let response = client.post(post_to).header("content-type", "application/x-www-form-urlencoded").body(body);
    let granted: Value = response.send().await.unwrap().json().await.unwrap();
    granted["access_token"].as_str().unwrap_or_else(|| panic!("a partner token: {granted}")).to_string()
}

/// Partner ids of secured test servers: A sends the referrals of `intake::referral`.
pub const PARTNER_A: &str = "hospital-angeles-mx";
pub const PARTNER_B: &str = "gulf-care-ae";
/// The configuration of a test server at `address`: the defaults, and notifications may go to
/// the test receivers on 127.0.0.1 (`--delivery-allow-host 127.0.0.1`).
fn test_config(address: std::net::SocketAddr) -> Config {
    Config {
        delivery_targets: rex_server::outbound::DeliveryTargets::allowing(["127.0.0.1"]),
        ..Config::for_address(address)
    }
}

/// The time zones configured for partners A and B.
pub const PARTNER_A_ZONE: &str = "America/Mexico_City";
pub const PARTNER_B_ZONE: &str = "Asia/Dubai";
/// A partner configured with `sandbox = true`.
pub const PARTNER_SANDBOX: &str = "sandbox-clinic";
/// A partner configured with `require_consent = true`.
pub const PARTNER_CONSENT: &str = "clinique-consent-fr";

/// A fresh EC P-384 key, and its PEM.
pub fn new_key() -> (rex_auth::SigningKey, Vec<u8>) {
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::SECP384R1).unwrap();
    let key = openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap()).unwrap();
    let pem = key.private_key_to_pem_pkcs8().unwrap();
    (rex_auth::SigningKey::new(key).unwrap(), pem)
}

impl TestAuth {
    /// Keys and the security configuration of partners A, B, a sandbox partner and one that
    /// requires consent (each limited
    /// to 600 requests a minute) and of the staff identity provider.
    /// `certificates` registers client-certificate fingerprints (`partner id`, SHA-256 hex).
    fn generate(token_url: String, certificates: &[(&str, String)]) -> (TestAuth, rex_auth::AuthConfig) {
        let partner_keys = [PARTNER_A, PARTNER_B, PARTNER_SANDBOX, PARTNER_CONSENT]
            .into_iter()
            .map(|id| {
                let (key, pem) = new_key();
                (id.to_string(), key, pem)
            })
            .collect::<Vec<_>>();
        let staff_key = new_key().0;
        let mut toml = format!(
            "[oidc]\nissuer = \"https://idp.test\"\naudience = \"rex\"\njwks = '{}'\n",
            staff_key.public_jwks()
        );
        for (id, key, _) in &partner_keys {
            toml.push_str(&format!(
                "[[partner]]\nid = \"{id}\"\nname = \"{id}\"\n\
                 organization_identifier = {{ system = \"https://rex.example/partners\", value = \"{id}\" }}\n\
                 scopes = [\"system/*.cruds\"]\nrate_limit_per_minute = 600\njwks = '{}'\n",
                key.public_jwks()
            ));
            if id == PARTNER_SANDBOX {
                toml.push_str("sandbox = true\n");
            }
            // Partner B refuses resources claiming profiles rex does not know (the others warn).
            if id == PARTNER_B {
                toml.push_str("unknown_profiles = \"reject\"\n");
            }
            let zone = [(PARTNER_A, PARTNER_A_ZONE), (PARTNER_B, PARTNER_B_ZONE)].into_iter().find(|(p, _)| p == id);
            if let Some((_, zone)) = zone {
                toml.push_str(&format!("timezone = \"{zone}\"\n"));
            }
            if id == PARTNER_CONSENT {
                toml.push_str("require_consent = true\n");
            }
            // The French clinic reads rex's texts in French, the Dubai partner in Arabic.
            let language = [(PARTNER_CONSENT, "fr"), (PARTNER_B, "ar")].into_iter().find(|(p, _)| p == id);
            if let Some((_, language)) = language {
                toml.push_str(&format!("language = \"{language}\"\n"));
            }
            if let Some((_, fingerprint)) = certificates.iter().find(|(partner, _)| partner == id) {
                toml.push_str(&format!("client_cert_sha256 = \"{fingerprint}\"\n"));
            }
        }
        let config = rex_auth::AuthConfig::from_toml(&toml, std::path::Path::new(".")).expect("test security config");
        let oidc = config.oidc.clone().unwrap();
        (TestAuth { token_url, partner_keys, staff_key, oidc }, config)
    }

    /// A client assertion of `partner`, signed with its key.
    pub fn assertion(&self, partner: &str) -> String {
        let key = &self.partner_keys.iter().find(|(id, _, _)| id == partner).expect("a test partner").1;
        rex_auth::mint_client_assertion(key, partner, &self.token_url, chrono::Utc::now().timestamp()).unwrap()
    }

    /// The private key of `partner` as PEM, for `rex send --key`.
    pub fn partner_key_pem(&self, partner: &str) -> &[u8] {
        &self.partner_keys.iter().find(|(id, _, _)| id == partner).expect("a test partner").2
    }

    /// A coordinator's staff token that expired a minute ago.
    pub fn expired_staff_token(&self) -> String {
        let spec = rex_auth::StaffTokenSpec {
            subject: "late".into(),
            role: rex_auth::StaffRole::Coordinator,
            practitioner_role: None,
            queues: Vec::new(),
            lifetime_seconds: -60,
        };
        rex_auth::mint_staff_token(&self.staff_key, &self.oidc, &spec, chrono::Utc::now().timestamp()).unwrap()
    }

    /// A staff token from the test identity provider.
    pub fn staff_token(&self, role: rex_auth::StaffRole, practitioner_role: Option<&str>, queues: &[&str]) -> String {
        let spec = rex_auth::StaffTokenSpec {
            subject: format!("{}-1", role.as_str()),
            role,
            practitioner_role: practitioner_role.map(str::to_string),
            queues: queues.iter().map(|q| q.to_string()).collect(),
            lifetime_seconds: 600,
        };
        rex_auth::mint_staff_token(&self.staff_key, &self.oidc, &spec, chrono::Utc::now().timestamp()).unwrap()
    }
}

/// A response: status, headers and the JSON body (Null when empty).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The first issue's code of an OperationOutcome body.
    pub fn issue_code(&self) -> &str {
        assert_eq!(self.body["resourceType"], "OperationOutcome", "expected an OperationOutcome, got {}", self.body);
        self.body["issue"][0]["code"].as_str().unwrap_or_default()
    }

    pub fn issue_expression(&self) -> &str {
        self.body["issue"][0]["expression"][0].as_str().unwrap_or_default()
    }
}

/// How a test server authenticates.
enum Security<'a> {
    /// `--dev`: no authentication.
    Off,
    On,
    /// Also a mutual-TLS listener, and these partners' certificate fingerprints.
    WithMtls(rex_auth::MtlsAcceptor, &'a [(&'a str, String)]),
}

enum Cleanup {
    File(std::path::PathBuf),
    PostgresDatabase { admin_url: String, name: String },
}

/// Says why a test is skipped (a tool it runs is missing), except in CI (`CI` set), where
/// `.ci/run` installs the tool, so its absence is a failure.
pub fn skipped(reason: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{reason}; .ci/run should have installed it");
    }
    eprintln!("SKIPPED: {reason}");
}

/// The OpenID Connect provider staff sign in at (`TestApp::sqlite_with_oidc_sign_in`).
pub struct SignInProvider {
    pub issuer: String,
    /// The public keys of its tokens (a JWKS, JSON).
    pub jwks: String,
    pub client_id: String,
    pub client_secret: String,
}

/// A running rex on its own database.
pub struct TestApp {
    /// `http://127.0.0.1:PORT/fhir`
    pub base: String,
    pub store: Store,
    /// The server's state, for tests that drive background work (escalation) directly.
    pub state: AppState,
    client: reqwest::Client,
    shutdown: watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
    /// The mutual-TLS listener (`sqlite_mtls`).
    pub mtls: Option<std::net::SocketAddr>,
    cleanup: Cleanup,
    database_url: String,
    /// Set when the server authenticates callers (`*_secured`).
    pub auth: Option<TestAuth>,
}

impl TestApp {
    pub async fn sqlite() -> TestApp {
        let (url, cleanup) = TestApp::sqlite_database();
        TestApp::start(&url, cleanup, Security::Off).await
    }

    pub async fn sqlite_secured() -> TestApp {
        let (url, cleanup) = TestApp::sqlite_database();
        TestApp::start(&url, cleanup, Security::On).await
    }

    /// Secured, with a mutual-TLS listener too (server certificate issued by `ca`, which also
    /// issues the clients' certificates) and the given partner certificate fingerprints.
    pub async fn sqlite_mtls(
        server: &rex_auth::testutil::Issued,
        ca: &rex_auth::testutil::Issued,
        certificates: &[(&str, String)],
    ) -> TestApp {
        let (url, cleanup) = TestApp::sqlite_database();
        let acceptor = rex_auth::MtlsAcceptor::from_pem(&server.cert_pem(), &server.key_pem(), &ca.cert_pem()).unwrap();
        TestApp::start(&url, cleanup, Security::WithMtls(acceptor, certificates)).await
    }

    pub async fn postgres() -> TestApp {
        let (url, cleanup) = TestApp::postgres_database().await;
        TestApp::start(&url, cleanup, Security::Off).await
    }

    pub async fn postgres_secured() -> TestApp {
        let (url, cleanup) = TestApp::postgres_database().await;
        TestApp::start(&url, cleanup, Security::On).await
    }

    fn sqlite_database() -> (String, Cleanup) {
        let path = std::env::temp_dir().join(format!("rex-test-{}.db", uuid::Uuid::new_v4()));
        (format!("sqlite://{}", path.display()), Cleanup::File(path))
    }

    async fn postgres_database() -> (String, Cleanup) {
        let admin_url = std::env::var("REX_TEST_POSTGRES_URL").expect(
            "REX_TEST_POSTGRES_URL must point at a PostgreSQL database, e.g. postgres://postgres@127.0.0.1:5432/test",
        );
        let name = format!("rex_t_{}", uuid::Uuid::new_v4().simple());
        sqlx::any::install_default_drivers();
        let mut admin = sqlx::AnyConnection::connect(&admin_url).await.expect("connect to REX_TEST_POSTGRES_URL");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create test database");
        admin.close().await.ok();
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("REX_TEST_POSTGRES_URL has no database part"),
        };
        (url, Cleanup::PostgresDatabase { admin_url, name })
    }

    async fn start(database_url: &str, cleanup: Cleanup, secured: Security<'_>) -> TestApp {
        let store = Store::connect(database_url).await.expect("open the test database");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let address = listener.local_addr().unwrap();
        let config = test_config(address);
        let base = config.base_url.clone();
        let server_signer = config.signer.clone();
        let routing = RoutingConfig::from_toml(include_str!("../../config/routing.toml")).expect("routing rules load");
        let certificates = match &secured {
            Security::WithMtls(_, certificates) => *certificates,
            _ => &[],
        };
        let (auth, security) = if matches!(secured, Security::Off) {
            (None, None)
        } else {
            let token_url = format!("http://{address}/auth/token");
            let (auth, config) = TestAuth::generate(token_url.clone(), certificates);
            let signer = server_signer.clone();
            (Some(auth), Some(rex_server::security::Security::new(config, signer, token_url, store.clone()).unwrap()))
        };
        let state = AppState::start(store.clone(), config, routing, VALIDATOR.clone(), partner_profiles(), security)
            .await
            .expect("state starts");
        let (mtls, mtls_listener) = match secured {
            Security::WithMtls(acceptor, _) => {
                let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
                let address = tcp.local_addr().unwrap();
                (Some(address), Some(rex_server::mtls::MtlsListener::new(tcp, acceptor).unwrap()))
            }
            _ => (None, None),
        };
        let listeners = rex_server::Listeners { plain: listener, mtls: mtls_listener };
        let (shutdown, server) = run(state.clone(), RunConfig::default(), listeners);
        let servers = vec![server];
        let database_url = database_url.to_string();
        let client = reqwest::Client::new();
        TestApp { base, store, state, client, shutdown, servers, mtls, cleanup, database_url, auth }
    }

    /// Starts another rex instance (development mode) on the same database, as a load balancer
    /// would spread requests over; returns its FHIR base URL. It stops with the test.
    pub async fn another_instance(&self) -> String {
        let store = Store::connect(&self.database_url).await.expect("open the shared database");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let config = test_config(listener.local_addr().unwrap());
        let base = config.base_url.clone();
        let routing = RoutingConfig::from_toml(include_str!("../../config/routing.toml")).expect("routing rules load");
        let state = AppState::start(store, config, routing, VALIDATOR.clone(), partner_profiles(), None)
            .await
            .expect("the second instance starts");
        let mut stopped = self.shutdown.subscribe();
        let stop = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let listeners = rex_server::Listeners { plain: listener, mtls: None };
        tokio::spawn(async move {
            rex_server::run(state, RunConfig::default(), listeners, stop).await.expect("second instance runs");
        });
        base
    }

    /// Stops the server and removes the database.
    pub async fn cleanup(mut self) {
        let _ = self.shutdown.send(true);
        for server in self.servers.drain(..) {
            let _ = server.await;
        }
        self.store.close().await;
        match &self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::PostgresDatabase { admin_url, name } => {
                if let Ok(mut admin) = sqlx::AnyConnection::connect(admin_url).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await;
                }
            }
        }
    }

    /// Sends a request to `path` (relative to the FHIR base, e.g. `Patient/1`, or absolute).
    pub async fn send(&self, method: Method, path: &str, headers: &[(&str, &str)], body: Option<String>) -> Reply {
        let (status, headers, text) = self.send_text(method, path, headers, body).await;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("rex answered {status} with non-JSON: {text}"))
        };
        Reply { status, headers, body }
    }

    /// Sends a request and returns the answer's body as text (for answers that are not JSON).
    pub async fn send_text(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> (StatusCode, HeaderMap, String) {
        let url = if path.starts_with("http") { path.to_string() } else { format!("{}/{}", self.base, path) };
        let mut request = self.client.request(method, url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("request reaches rex");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        (status, headers, text)
    }

    /// An access token of a test partner, through the token endpoint.
    pub async fn partner_token(&self, partner: &str, scope: &str) -> String {
        let assertion = self.auth.as_ref().expect("a secured test app").assertion(partner);
        let reply = self.exchange(&assertion, scope).await;
        assert_eq!(reply.status, StatusCode::OK, "token for {partner}: {}", reply.body);
        reply.body["access_token"].as_str().unwrap().to_string()
    }

    /// A `client_credentials` token request with a client assertion.
    pub async fn exchange(&self, assertion: &str, scope: &str) -> Reply {
        self.token_request(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion),
            ("scope", scope),
        ])
        .await
    }

    /// Posts a form to the token endpoint.
    pub async fn token_request(&self, form: &[(&str, &str)]) -> Reply {
        let url = &self.auth.as_ref().expect("a secured test app").token_url;
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        self.send(Method::POST, url, &[("content-type", "application/x-www-form-urlencoded")], Some(body)).await
    }

    /// Sends a request with `Authorization: Bearer <token>`.
    pub async fn send_as(&self, token: &str, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let authorization = format!("Bearer {token}");
        let mut headers = vec![("authorization", authorization.as_str())];
        if body.is_some() {
            headers.push(("content-type", "application/fhir+json"));
        }
        self.send(method, path, &headers, body.map(Value::to_string)).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, &[], None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::POST, path, &[("content-type", "application/fhir+json")], Some(body.to_string())).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::PUT, path, &[("content-type", "application/fhir+json")], Some(body.to_string())).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, &[], None).await
    }

    /// Creates a resource and returns its id.
    pub async fn create(&self, resource: &Value) -> String {
        let resource_type = resource["resourceType"].as_str().unwrap();
        let reply = self.post(resource_type, resource).await;
        assert_eq!(reply.status, StatusCode::CREATED, "create {resource_type}: {}", reply.body);
        reply.body["id"].as_str().unwrap().to_string()
    }

    /// The ids of a search's matches, in order.
    pub async fn search_ids(&self, query: &str) -> Vec<String> {
        let reply = self.get(query).await;
        assert_eq!(reply.status, StatusCode::OK, "search {query}: {}", reply.body);
        reply.body["entry"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| e["search"]["mode"] == "match")
                    .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The total of a search (`_summary=count`), e.g. `total("Patient?gender=female")`.
    pub async fn total(&self, query: &str) -> i64 {
        let separator = if query.contains('?') { '&' } else { '?' };
        let reply = self.get(&format!("{query}{separator}_summary=count")).await;
        assert_eq!(reply.status, StatusCode::OK, "count {query}: {}", reply.body);
        reply.body["total"].as_i64().unwrap()
    }

    /// Number of rows in a table, to prove that failed requests wrote nothing.
    pub async fn count_rows(&self, table: &str) -> i64 {
        self.store.count_rows(table).await.expect("count rows")
    }
}

impl TestApp {
    /// A rex on SQLite with the demo referrals (`fixtures/valid`) loaded and the web UI (`rex_web`)
    /// served under `/ui` beside the API, as `rex serve` does: `secured`, or in development mode
    /// with the development login.
    pub async fn sqlite_with_ui(secured: bool) -> TestApp {
        TestApp::with_ui(secured, None).await
    }

    /// Like `sqlite_with_ui(true)`, with staff signing in at the OpenID Connect provider
    /// `provider.issuer`, whose tokens are signed with the key of `provider.jwks`; rex is its client
    /// `provider.client_id`, with its callback at `http://ADDRESS/ui/callback`.
    pub async fn sqlite_with_oidc_sign_in(provider: &SignInProvider) -> TestApp {
        TestApp::with_ui(true, Some(provider)).await
    }

    async fn with_ui(secured: bool, provider: Option<&SignInProvider>) -> TestApp {
        let (url, cleanup) = TestApp::sqlite_database();
        let store = Store::connect(&url).await.expect("open the test database");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let address = listener.local_addr().unwrap();
        let config = test_config(address);
        let base = config.base_url.clone();
        let server_signer = config.signer.clone();
        let routing = RoutingConfig::from_toml(include_str!("../../config/routing.toml")).expect("routing rules load");
        let (auth, security) = if secured {
            let token_url = format!("http://{address}/auth/token");
            let (mut auth, mut security) = TestAuth::generate(token_url.clone(), &[]);
            if let Some(provider) = provider {
                let toml =
                    format!("[oidc]\nissuer = {:?}\naudience = \"rex\"\njwks = '{}'\n", provider.issuer, provider.jwks);
                let config = rex_auth::AuthConfig::from_toml(&toml, std::path::Path::new(".")).expect("[oidc] loads");
                auth.oidc = config.oidc.clone().unwrap();
                security.oidc = config.oidc;
            }
            let signer = server_signer.clone();
            (Some(auth), Some(rex_server::security::Security::new(security, signer, token_url, store.clone()).unwrap()))
        } else {
            (None, None)
        };
        let state = AppState::start(store.clone(), config, routing, VALIDATOR.clone(), partner_profiles(), security)
            .await
            .expect("state starts");
        let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/valid");
        rex_server::load_demo_data(&state, &demo).await.expect("demo referrals load");
        let options = rex_web::WebOptions {
            dev_login: !secured,
            oidc: auth.as_ref().map(|auth| auth.oidc.clone()),
            secure_cookies: false,
            sign_in: provider.map(|provider| rex_web::OidcClient {
                client_id: provider.client_id.clone(),
                client_secret: Some(provider.client_secret.clone()),
                redirect_url: format!("http://{address}/ui/callback"),
                scopes: vec!["rex".into()],
            }),
        };
        let ui = rex_web::routes(rex_server::router(state.clone()), options);
        let config = RunConfig { ui: Some(ui), ..RunConfig::default() };
        let (shutdown, server) = run(state.clone(), config, rex_server::Listeners { plain: listener, mtls: None });
        TestApp {
            base,
            store,
            state,
            client: reqwest::Client::new(),
            shutdown,
            servers: vec![server],
            mtls: None,
            cleanup,
            database_url: url,
            auth,
        }
    }
}

/// Runs `state` as `rex serve` does (`rex_server::run`) until the returned sender says stop.
fn run(
    state: AppState,
    config: RunConfig,
    listeners: rex_server::Listeners,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (shutdown, mut stop) = watch::channel(false);
    let stopped = async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    };
    let server = tokio::spawn(async move {
        rex_server::run(state, config, listeners, stopped).await.expect("server runs");
    });
    (shutdown, server)
}
