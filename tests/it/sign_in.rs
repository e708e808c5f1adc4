//! Staff sign-in to the worklist with OpenID Connect, against a real provider: panva's
//! oidc-provider (`tests/oidc/provider.mjs`, run with node; `.ci/run` installs it with `npm ci`).
//! The browser is played by a client that keeps cookies and follows redirects one by one: rex sends
//! it to the provider with a PKCE challenge, the staff member signs in on the provider's form, the
//! provider sends it back to rex with a code, rex exchanges it and opens the session, and the
//! worklist shows who signed in. A changed `state` and a wrong code verifier are refused.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use crate::support::{SignInProvider, TestApp, new_key, skipped};

/// The provider, a node process.
struct Provider(Child);

impl Provider {
    /// Starts it on `port` for `provider`'s client and key, or says why it cannot and returns `None`
    /// (in CI it fails instead: `.ci/run` installs it).
    fn start(port: u16, provider: &SignInProvider, redirect: &str, key_pem: &[u8], kid: &str) -> Option<Provider> {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
        let node = Command::new("node").arg("--version").output();
        if !node.is_ok_and(|o| o.status.success()) || !folder.join("node_modules/oidc-provider").is_dir() {
            skipped("the OpenID Connect sign-in test needs node and `npm ci` in tests/oidc");
            return None;
        }
        let child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(&folder)
            .env("PORT", port.to_string())
            .env("CLIENT_ID", &provider.client_id)
            .env("CLIENT_SECRET", &provider.client_secret)
            .env("REDIRECT_URI", redirect)
            .env("KEY_PEM", String::from_utf8(key_pem.to_vec()).unwrap())
            .env("KID", kid)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node starts the provider");
        let started = Provider(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(started);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the OpenID Connect provider did not listen on port {port}");
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A browser: cookies per host, redirects followed by the test.
struct Browser {
    client: reqwest::Client,
    cookies: HashMap<String, HashMap<String, String>>,
}

impl Browser {
    fn new() -> Browser {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Browser { client, cookies: HashMap::new() }
    }

    fn host(url: &reqwest::Url) -> String {
        format!("{}:{}", url.host_str().unwrap(), url.port_or_known_default().unwrap())
    }

    async fn send(&mut self, url: &str, form: Option<&[(&str, &str)]>) -> (StatusCode, Option<String>, String) {
        let url = reqwest::Url::parse(url).unwrap();
        let jar = self.cookies.entry(Browser::host(&url)).or_default();
        let cookie: Vec<String> = jar.iter().map(|(name, value)| format!("{name}={value}")).collect();
        let request = match form {
            Some(form) => self.client.post(url.clone()).form(form),
            None => self.client.get(url.clone()),
        };
        let response = request.header(COOKIE, cookie.join("; ")).send().await.unwrap();
        for set in response.headers().get_all(SET_COOKIE) {
            let set = set.to_str().unwrap();
            let (name, value) = set.split(';').next().unwrap().split_once('=').unwrap();
            match value.is_empty() || set.contains("Max-Age=0") {
                true => jar.remove(name),
                false => jar.insert(name.to_string(), value.to_string()),
            };
        }
        let location = response.headers().get(LOCATION).map(|l| url.join(l.to_str().unwrap()).unwrap().to_string());
        (response.status(), location, response.text().await.unwrap())
    }

    /// Follows redirects from `url` until one leads to `stop` (returned) or a page is shown
    /// (returned as an error with the page).
    async fn follow(&mut self, mut url: String, stop: &str) -> Result<String, String> {
        for _ in 0..10 {
            if url.starts_with(stop) {
                return Ok(url);
            }
            match self.send(&url, None).await {
                (status, Some(location), _) if status.is_redirection() => url = location,
                (_, _, page) => return Err(page),
            }
        }
        panic!("too many redirects");
    }
}

/// From `/ui/login` to the provider's redirect back to rex, signing in as `account` on the
/// provider's form; returns the callback URL (with code and state), not yet visited.
async fn sign_in_at_provider(browser: &mut Browser, origin: &str, issuer: &str, account: &str) -> String {
    let (status, location, _) = browser.send(&format!("{origin}/ui/login"), None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let authorize = location.unwrap();
    assert!(authorize.starts_with(&format!("{issuer}/auth?")), "{authorize}");
    for parameter in ["code_challenge_method=S256", "code_challenge=", "state=", "nonce=", "scope=openid+rex"] {
        assert!(authorize.contains(parameter), "{authorize} lacks {parameter}");
    }
    let form = browser.follow(authorize, "never").await.expect_err("the provider's login form");
    let action = form.split("action=\"").nth(1).and_then(|rest| rest.split('"').next()).expect("a form action");
    let (status, location, page) = browser.send(&format!("{issuer}{action}"), Some(&[("login", account)])).await;
    assert!(status.is_redirection(), "{status}: {page}");
    browser.follow(location.unwrap(), &format!("{origin}/ui/callback")).await.expect("back to rex")
}

#[tokio::test]
async fn staff_sign_in_at_the_identity_provider_with_pkce() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (key, pem) = new_key();
    let provider = SignInProvider {
        issuer: format!("http://127.0.0.1:{port}"),
        jwks: key.public_jwks().to_string(),
        client_id: "rex-worklist".into(),
        client_secret: uuid::Uuid::new_v4().to_string(),
    };
    let app = TestApp::sqlite_with_oidc_sign_in(&provider).await;
    let origin = app.base.trim_end_matches("/fhir").to_string();
    let redirect = format!("{origin}/ui/callback");
    let Some(_running) = Provider::start(port, &provider, &redirect, &pem, key.kid().unwrap()) else {
        return app.cleanup().await;
    };
    let issuer = provider.issuer.as_str();

    // A callback whose state was changed is refused, and opens no session.
    let mut browser = Browser::new();
    let callback = sign_in_at_provider(&mut browser, &origin, issuer, "dr-lee").await;
    let state = callback.split("state=").nth(1).unwrap().split('&').next().unwrap().to_string();
    let tampered = callback.replace(&format!("state={state}"), &format!("state={}", state.replace('a', "b")));
    assert_ne!(tampered, callback);
    let (status, _, page) = browser.send(&tampered, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{page}");
    assert!(page.contains("state does not match"), "{page}");
    assert!(!browser.cookies[&Browser::host(&reqwest::Url::parse(&origin).unwrap())].contains_key("rex_session"));

    // A code redeemed with another verifier is refused by the provider, so by rex.
    let mut browser = Browser::new();
    let callback = sign_in_at_provider(&mut browser, &origin, issuer, "dr-lee").await;
    let rex_host = Browser::host(&reqwest::Url::parse(&origin).unwrap());
    let login = browser.cookies[&rex_host]["rex_login"].clone();
    let (started, verifier) = login.rsplit_once('.').unwrap();
    browser
        .cookies
        .get_mut(&rex_host)
        .unwrap()
        .insert("rex_login".into(), format!("{started}.{}", verifier.replace('a', "b").replace('1', "2")));
    let (status, _, page) = browser.send(&callback, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{page}");
    assert!(page.contains("refused the code"), "{page}");
    assert!(!browser.cookies[&rex_host].contains_key("rex_session"));

    // The whole flow: the session is open and the worklist shows the specialist.
    let mut browser = Browser::new();
    let callback = sign_in_at_provider(&mut browser, &origin, issuer, "dr-lee").await;
    let (status, _, page) = browser.send(&callback, None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains(r#"url=/ui/worklist"#), "{page}");
    assert!(browser.cookies[&rex_host].contains_key("rex_session"));
    assert!(!browser.cookies[&rex_host].contains_key("rex_login"), "the sign-in cookie is cleared");
    let (status, _, worklist) = browser.send(&format!("{origin}/ui/worklist"), None).await;
    assert_eq!(status, StatusCode::OK, "{worklist}");
    assert!(worklist.contains("dr-lee (specialist)"), "{worklist}");
    // The same code cannot open a second session.
    let (status, _, _) = Browser::new().send(&callback, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.cleanup().await;
}
