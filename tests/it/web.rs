//! The web UI end to end: a real rex (secured, demo referrals loaded) with `/ui`, driven in
//! headless Chromium over WebDriver. A specialist signs in, finds a demo referral on the worklist,
//! claims it, asks the partner for information; the partner answers over the API; the specialist
//! writes the opinion and completes; the partner reads the opinion over the API. Screenshots of the
//! worklist, the referral view and the coordinator view are saved on every run under the target
//! folder, and refresh the ones in `docs/screenshots/` (shown in the README) when
//! `REX_UPDATE_SCREENSHOTS=1`, so a test run leaves the checkout clean.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use rex_auth::StaffRole;
use serde_json::{Value, json};

use crate::support::{PARTNER_A, TestApp};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long to wait for a page to show what is expected.
const PATIENCE: Duration = Duration::from_secs(20);

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    process: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A small W3C WebDriver client: only the commands this test uses.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    _driver: Driver,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session; `None` (with the reason printed)
    /// when either is not installed.
    pub async fn start() -> Option<Browser> {
        for program in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(program).exists() {
                eprintln!(
                    "SKIPPED: the web UI browser test needs {program} (Debian: apt-get install chromium chromium-driver)"
                );
                return None;
            }
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let process = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver { process, url: format!("http://127.0.0.1:{port}") };
        let http = reqwest::Client::new();
        let started = Instant::now();
        while http.get(format!("{}/status", driver.url)).send().await.is_err() {
            assert!(started.elapsed() < PATIENCE, "chromedriver did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                         "--no-first-run", "--window-size=1400,1000"]
            }
        }}});
        let reply: Value = http
            .post(format!("{}/session", driver.url))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = reply["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {reply}")).to_string();
        Some(Browser { http, session, _driver: driver })
    }

    async fn command(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self._driver.url, self.session);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply: Value = request.send().await.expect("chromedriver answers").json().await.unwrap();
        assert!(reply["value"]["error"].is_null(), "WebDriver {path}: {}", reply["value"]);
        reply["value"].clone()
    }

    pub async fn go(&self, url: &str) {
        self.command(Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    pub async fn current_url(&self) -> String {
        self.command(Method::GET, "/url", None).await.as_str().unwrap().to_string()
    }

    pub async fn source(&self) -> String {
        self.command(Method::GET, "/source", None).await.as_str().unwrap().to_string()
    }

    /// Waits until the page contains `text`, and returns the page.
    pub async fn wait_for(&self, text: &str) -> String {
        let started = Instant::now();
        loop {
            let source = self.source().await;
            if source.contains(text) {
                return source;
            }
            assert!(started.elapsed() < PATIENCE, "the page never showed {text:?}; it shows:\n{source}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The element matched by a CSS selector.
    pub async fn find(&self, css: &str) -> String {
        self.find_by("css selector", css).await
    }

    pub async fn find_by(&self, using: &str, value: &str) -> String {
        let element = self.command(Method::POST, "/element", Some(json!({"using": using, "value": value}))).await;
        // The W3C element reference is the object's only value.
        element.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).unwrap().to_string()
    }

    pub async fn click(&self, element: &str) {
        self.command(Method::POST, &format!("/element/{element}/click"), Some(json!({}))).await;
    }

    /// Clicks the button with this text.
    pub async fn press(&self, text: &str) {
        let button = self.find_by("xpath", &format!("//button[normalize-space()='{text}']")).await;
        self.click(&button).await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(Method::POST, &format!("/element/{element}/value"), Some(json!({"text": text}))).await;
    }

    pub async fn attribute(&self, element: &str, name: &str) -> String {
        let value = self.command(Method::GET, &format!("/element/{element}/attribute/{name}"), None).await;
        value.as_str().unwrap_or_default().to_string()
    }

    /// Runs a script in the page and returns its value.
    pub async fn script(&self, script: &str) -> Value {
        self.command(Method::POST, "/execute/sync", Some(json!({"script": script, "args": []}))).await
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.command(Method::POST, "/window/rect", Some(json!({"width": width, "height": height}))).await;
    }

    /// Saves a PNG of the window.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let png = self.command(Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// Signs in to the web UI at `origin` with a staff bearer token and waits for the worklist.
    pub async fn sign_in(&self, origin: &str, token: &str) {
        self.go(&format!("{origin}/ui/")).await;
        self.wait_for("Staff bearer token").await;
        self.type_into("#token", token).await;
        self.press("Sign in").await;
        self.wait_for("referrals, due first").await;
    }

    /// Sets form fields by element id, as the browser's date and time pickers would.
    pub async fn fill(&self, fields: &[(&str, &str)]) {
        let script: String = fields
            .iter()
            .map(|(id, value)| format!("document.getElementById({}).value = {};", json!(id), json!(value)))
            .collect();
        self.script(&script).await;
    }

    pub async fn close(self) {
        self.command(Method::DELETE, "", None).await;
    }
}

pub fn screenshots() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let folder = if std::env::var("REX_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        root.join("docs/screenshots")
    } else {
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from).join("screenshots")
    };
    std::fs::create_dir_all(&folder).expect("a screenshot folder");
    folder
}

/// The id of the demo referral's Task that has this reason, through the API as staff.
async fn task_with_reason(app: &TestApp, token: &str, queue: &str, reason_code: &str) -> String {
    let reply = app
        .send_as(
            token,
            Method::GET,
            &format!("Task?owner=HealthcareService/{queue}&_include=Task:focus&_count=100"),
            None,
        )
        .await;
    let entries = reply.body["entry"].as_array().unwrap();
    let request = entries
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "ServiceRequest" && r["reasonCode"][0]["coding"][0]["code"] == reason_code)
        .unwrap_or_else(|| panic!("no referral with reason {reason_code} in {queue}"));
    let focus = format!("ServiceRequest/{}", request["id"].as_str().unwrap());
    let task = entries.iter().map(|e| &e["resource"]).find(|r| r["focus"]["reference"] == focus.as_str()).unwrap();
    task["id"].as_str().unwrap().to_string()
}

/// Page addresses hold only `/ui` paths, opaque ids and codes: never names or identifiers.
fn assert_no_personal_data(url: &str) {
    let path = url.split_once("/ui/").map(|(_, path)| path).unwrap_or_else(|| panic!("not a UI page: {url}"));
    assert!(
        path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/?=&-_.".contains(&b)),
        "unexpected characters in {url}"
    );
    for personal in ["Trevi", "Garza", "HAL-", "G41872265", "1968"] {
        assert!(!url.contains(personal), "{url} carries personal data");
    }
}

#[tokio::test]
async fn a_specialist_works_a_referral_in_the_browser() {
    let Some(browser) = Browser::start().await else { return };
    let app = TestApp::sqlite_with_ui(true).await;
    let origin = app.base.trim_end_matches("/fhir").to_string();
    let auth = app.auth.as_ref().unwrap();
    let specialist = auth.staff_token(StaffRole::Specialist, Some("PractitionerRole/dr-web"), &["cardiology"]);
    let coordinator = auth.staff_token(StaffRole::Coordinator, None, &[]);
    // Demo referral 01 (NSTEMI, partner A): the one worked here. Referral 04 shows a refusal.
    let task = task_with_reason(&app, &specialist, "cardiology", "I21.4").await;
    let other = task_with_reason(&app, &specialist, "cardiology", "I50.23").await;
    let mut visited = Vec::new();

    // Sign in with the bearer token.
    browser.sign_in(&origin, &specialist).await;
    let worklist = browser.source().await;
    visited.push(browser.current_url().await);
    assert!(worklist.contains("Cardiology review"), "the specialist's queue is named");
    assert!(worklist.contains("Non-ST elevation (NSTEMI) myocardial infarction"), "the demo referral is listed");
    assert!(worklist.contains(r#"class="badge sla-"#) && worklist.contains("Interpreter needed"));
    assert!(worklist.contains(r#"Hospital Ángeles Lomas<div class="second">MX</div>"#));
    assert!(!worklist.contains("Oncology review"), "a specialist sees only their queues");
    // Referral or second opinion at a glance, with the clinical question on the row.
    assert!(worklist.contains(r#"<span class="kind kind-second-opinion">Second opinion</span>"#), "aortic stenosis");
    assert!(worklist.contains(r#"<div class="question">please accept for invasive coronary angiography"#));
    // Compact rows: at 1366x768 the list starts high, its rows are two lines, at least seven fit
    // above the fold, and nothing needs a horizontal scroll.
    browser.resize(1366, 768).await;
    let layout = browser
        .script(
            "const t = document.querySelector('table.worklist'); const rows = t.tBodies[0].rows;\
             return {top: rows[0].getBoundingClientRect().top, height: Math.max(...[...rows].map(r => r.offsetHeight)),\
                     window: window.innerHeight, wide: document.documentElement.scrollWidth > window.innerWidth};",
        )
        .await;
    let (top, height, window) =
        (layout["top"].as_f64().unwrap(), layout["height"].as_f64().unwrap(), layout["window"].as_f64().unwrap());
    let fit = ((window - top) / height).floor();
    browser.screenshot(&screenshots().join("worklist.png")).await;
    assert!(height <= 50.0 && fit >= 7.0, "{fit} rows of {height} px fit above the fold: {layout}");
    assert_eq!(layout["wide"], false, "the worklist fits 1366 px: {layout}");
    browser.resize(1400, 1000).await;

    // Filters: stat referrals only.
    browser.go(&format!("{origin}/ui/worklist?priority=stat")).await;
    let stat = browser.wait_for("Worklist").await;
    assert!(stat.contains("NSTEMI") && !stat.contains("Acute on chronic systolic"));

    // Open the referral from the worklist.
    browser.go(&format!("{origin}/ui/worklist")).await;
    let link = browser.find_by("partial link text", "Non-ST elevation").await;
    assert_eq!(browser.attribute(&link, "href").await, format!("/ui/referral/{task}"));
    browser.click(&link).await;
    let view = browser.wait_for("Routing decision").await;
    visited.push(browser.current_url().await);
    for expected in [
        "Treviño Garza",   // patient summary
        "ICD-10-CM I21.4", // reason codes with display
        "Problems",        // clinical summary by IPS section
        "Attachments",     // the ECG
        "ECG 2026-11-28 22:49",
        "Claim this referral", // the only actions a requested Task allows
        "Redirect",
        "Clinical question", // on the first screen
        "please accept for invasive coronary angiography",
        "Decline",
        "cardiology", // routing rule and queue
    ] {
        assert!(view.contains(expected), "the referral view shows {expected:?}");
    }
    assert!(!view.contains("Submit opinion and complete"), "completing is not offered before a claim");
    assert!(!view.contains(r#"<option value="sandbox">"#), "the sandbox is no redirect choice");
    let question_top =
        browser.script("return document.getElementById('h-question').getBoundingClientRect().top;").await;
    assert!(question_top.as_f64().unwrap() < 1000.0, "the question is on the first screen: {question_top}");
    let attachment = browser.find_by("partial link text", "View").await;
    let href = browser.attribute(&attachment, "href").await;
    assert!(href.starts_with("/ui/file/DocumentReference/"), "{href}");

    // Claim, then ask the partner for information.
    browser.press("Claim this referral").await;
    browser.wait_for("You claimed this referral.").await;
    visited.push(browser.current_url().await);
    browser.type_into("#info-message", "Please send the troponin trend of the last 24 hours.").await;
    let document = browser.find("#info-document option:nth-child(3)").await;
    browser.click(&document).await;
    browser.press("Send request").await;
    let waiting = browser.wait_for("Your request for information was sent").await;
    assert!(waiting.contains("Waiting for the partner") && waiting.contains("the SLA clock is paused"));
    assert!(waiting.contains("Release to the queue") && waiting.contains("Decline"), "still possible on hold");
    assert!(waiting.contains("Please send the troponin trend"));

    // The partner answers over the API; the Task resumes.
    let partner = app.partner_token(PARTNER_A, "system/*.cruds").await;
    let requests = app.send_as(&partner, Method::GET, "Communication?category=information-request", None).await;
    assert_eq!(requests.body["total"], 1, "{}", requests.body);
    let request = requests.body["entry"][0]["resource"]["id"].as_str().unwrap().to_string();
    let answer = json!({"resourceType": "Communication", "status": "completed",
        "inResponseTo": [{"reference": format!("Communication/{request}")}],
        "payload": [{"contentString": "Troponin I: 0.9, 1.4 and 1.1 ng/mL at 0, 6 and 12 h."},
                    {"contentAttachment": {"contentType": "application/pdf", "data": "JVBERi0xLjQK", "title": "Troponin trend"}},
                    {"contentAttachment": {"contentType": "image/png", "data": PIXEL_PNG, "title": "ECG strip photo"}}]});
    let answered = app.send_as(&partner, Method::POST, "Communication", Some(&answer)).await;
    assert_eq!(answered.status, StatusCode::CREATED, "{}", answered.body);

    // The worklist marks the referral updated until its specialist opens it.
    browser.go(&format!("{origin}/ui/worklist")).await;
    let marked = browser.wait_for("referrals, due first").await;
    assert!(row_of(&marked, &task).contains("Updated: answer received"), "{}", row_of(&marked, &task));

    // Back in the browser: the answer is in the conversation; write the opinion with a PDF.
    browser.go(&format!("{origin}/ui/referral/{task}")).await;
    let resumed = browser.wait_for("Answer from the partner").await;
    assert!(resumed.contains("Troponin I: 0.9") && resumed.contains("Troponin trend"));
    assert!(resumed.contains("Submit opinion and complete"));
    // The partner's photo is shown in the page (it loaded: served as an image to the page).
    // It loads lazily: scrolled into view, it must arrive.
    let started = Instant::now();
    loop {
        let width = browser
            .script(
                "const i = document.querySelector('img.attachment'); i.scrollIntoView();\
                 return i.complete ? i.naturalWidth : -1;",
            )
            .await;
        if width.as_i64() == Some(1) {
            break;
        }
        assert!(started.elapsed() < PATIENCE && width.as_i64() != Some(0), "the photo is not shown: {width}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.script("window.scrollTo(0, 0); return 0;").await;
    browser.go(&format!("{origin}/ui/worklist")).await;
    let seen = browser.wait_for("referrals, due first").await;
    assert!(!row_of(&seen, &task).contains("Updated:"), "opened by its specialist");
    browser.go(&format!("{origin}/ui/referral/{task}")).await;
    browser.wait_for("Answer from the partner").await;
    browser.resize(1400, 3400).await;
    browser.screenshot(&screenshots().join("referral.png")).await;
    browser.resize(1400, 1000).await;
    let pdf = std::env::temp_dir().join(format!("rex-opinion-{}.pdf", uuid::Uuid::new_v4()));
    std::fs::write(&pdf, b"%PDF-1.4\n% rex test opinion\n").unwrap();
    browser
        .type_into("#opinion-conclusion", "NSTEMI with rising troponin: early invasive strategy within 24 hours.")
        .await;
    browser.type_into("#opinion-code", "401314000").await;
    browser.type_into("#opinion-display", "Acute non-ST segment elevation myocardial infarction").await;
    browser.type_into("#opinion-pdf", pdf.to_str().unwrap()).await;
    browser.press("Submit opinion and complete").await;
    let completed = browser.wait_for("Your opinion was returned").await;
    visited.push(browser.current_url().await);
    std::fs::remove_file(&pdf).ok();
    assert!(completed.contains("Opinion returned") && completed.contains("early invasive strategy"));
    assert!(completed.contains("This referral is closed."), "nothing is offered on a completed referral");
    assert!(completed.contains("request-information") && completed.contains("receive-information"), "history");

    // The partner reads the opinion over the API.
    let done = app.send_as(&partner, Method::GET, &format!("Task/{task}"), None).await;
    assert_eq!(done.body["status"], "completed");
    let opinion = done.body["output"][0]["valueReference"]["reference"].as_str().unwrap().to_string();
    let report = app.send_as(&partner, Method::GET, &opinion, None).await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    assert_eq!(report.body["conclusion"], "NSTEMI with rising troponin: early invasive strategy within 24 hours.");
    assert_eq!(report.body["conclusionCode"][0]["coding"][0]["code"], "401314000");
    assert_eq!(report.body["presentedForm"][0]["contentType"], "application/pdf");

    // A refused action shows the API's message: another referral claimed meanwhile by someone else.
    browser.go(&format!("{origin}/ui/referral/{other}")).await;
    browser.wait_for("Claim this referral").await;
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "owner", "valueReference": {"reference": "PractitionerRole/dr-other"}}]});
    let taken = app.send_as(&coordinator, Method::POST, &format!("Task/{other}/$claim"), Some(&body)).await;
    assert_eq!(taken.status, StatusCode::OK, "{}", taken.body);
    browser.press("Claim this referral").await;
    let refused = browser.wait_for("Refused:").await;
    assert!(refused.contains(&format!("Task/{other}")), "the OperationOutcome's message is shown");

    // A day on, rex's escalation worker flags the open referrals past their due time.
    let later = chrono::Utc::now() + chrono::Duration::hours(25);
    let escalated = rex_server::interactions::escalation::escalate_overdue(&app.state, later).await.unwrap();
    assert!(escalated.contains(&other), "the claimed asap referral is escalated: {escalated:?}");

    // The coordinator's view counts the queues by SLA state and lists the escalated referrals.
    browser.press("Sign out").await;
    browser.wait_for("Staff bearer token").await;
    browser.type_into("#token", &coordinator).await;
    browser.press("Sign in").await;
    browser.wait_for("Coordinator view").await;
    browser.go(&format!("{origin}/ui/coordinator")).await;
    let counts = browser.wait_for("Open referrals per queue by SLA state").await;
    assert!(counts.contains("Oncology review") && counts.contains("Escalated referrals"));
    assert!(counts.contains(&format!(r#"<a href="/ui/referral/{other}">Acute on chronic systolic"#)), "{counts}");
    assert!(!counts.contains(&format!("/ui/referral/{task}\"")), "a completed referral is not escalated");
    browser.screenshot(&screenshots().join("coordinator.png")).await;

    for url in &visited {
        assert_no_personal_data(url);
    }
    browser.close().await;
    app.cleanup().await;
}

/// Without the browser: the session cookie's flags, CSRF on every form, and sign-in refusals.
#[tokio::test]
async fn sessions_are_strict_cookies_and_forms_need_their_csrf_token() {
    let app = TestApp::sqlite_with_ui(true).await;
    let origin = app.base.trim_end_matches("/fhir").to_string();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let page = http.get(format!("{origin}/ui/worklist")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER, "signed out: to the sign-in page");
    let sign_in = http.get(format!("{origin}/ui/sign-in")).send().await.unwrap();
    assert!(sign_in.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    let csrf_cookie = sign_in.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(csrf_cookie.contains("HttpOnly") && csrf_cookie.contains("SameSite=Strict"), "{csrf_cookie}");
    let csrf = csrf_cookie.split(';').next().unwrap().trim_start_matches("rex_csrf=").to_string();
    let token =
        app.auth.as_ref().unwrap().staff_token(StaffRole::Specialist, Some("PractitionerRole/a"), &["cardiology"]);
    let form = |pairs: &[(&str, &str)]| form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    let post = |path: &str, cookies: String, body: String| {
        http.post(format!("{origin}{path}"))
            .header("cookie", cookies)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    // Without the CSRF token: refused.
    let forged = post("/ui/sign-in", format!("rex_csrf={csrf}"), form(&[("token", &token)])).await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    // A partner's token is no staff sign-in.
    let partner = app.partner_token(PARTNER_A, "system/Task.rs").await;
    let wrong =
        post("/ui/sign-in", format!("rex_csrf={csrf}"), form(&[("csrf", &csrf), ("token", &partner)])).await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    // The staff token signs in: the token goes into a strict cookie, never into a URL.
    let signed =
        post("/ui/sign-in", format!("rex_csrf={csrf}"), form(&[("csrf", &csrf), ("token", &token)])).await.unwrap();
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed.headers()["location"], "/ui/worklist");
    let cookies: Vec<String> =
        signed.headers().get_all("set-cookie").iter().map(|c| c.to_str().unwrap().to_string()).collect();
    assert!(cookies.iter().all(|c| c.contains("HttpOnly; SameSite=Strict")), "{cookies:?}");
    let jar: Vec<&str> = cookies.iter().map(|c| c.split(';').next().unwrap()).collect();
    let session = jar.join("; ");
    let worklist = http.get(format!("{origin}/ui/worklist")).header("cookie", &session).send().await.unwrap();
    assert_eq!(worklist.status(), StatusCode::OK);
    assert_eq!(worklist.headers()["cache-control"], "no-store");
    // An action posted with the old (pre-sign-in) CSRF token is refused: sign-in rotated it.
    let task = task_with_reason(&app, &token, "cardiology", "I21.4").await;
    let stale = post(&format!("/ui/referral/{task}/claim"), session.clone(), form(&[("csrf", &csrf)])).await.unwrap();
    assert_eq!(stale.status(), StatusCode::FORBIDDEN);
    let still = app.send_as(&token, Method::GET, &format!("Task/{task}"), None).await;
    assert_eq!(still.body["status"], "requested", "the refused form changed nothing");
    app.cleanup().await;
}

/// `--dev`: the development login (role, PractitionerRole, queues) and work without any token.
#[tokio::test]
async fn the_development_login_works_without_tokens() {
    let app = TestApp::sqlite_with_ui(false).await;
    let origin = app.base.trim_end_matches("/fhir").to_string();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let sign_in = http.get(format!("{origin}/ui/sign-in")).send().await.unwrap();
    let csrf_cookie = sign_in.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let csrf = csrf_cookie.trim_start_matches("rex_csrf=").to_string();
    let page = sign_in.text().await.unwrap();
    assert!(page.contains("Development login") && page.contains(r#"value="cardiology""#), "the queues are offered");
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("csrf", csrf.as_str()),
            ("role", "specialist"),
            ("practitioner_role", "PractitionerRole/dev-1"),
            ("queue", "cardiology"),
            ("queue", "oncology"),
        ])
        .finish();
    let signed = http
        .post(format!("{origin}/ui/dev-sign-in"))
        .header("cookie", &csrf_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let jar: Vec<String> = signed
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_string())
        .collect();
    let session = jar.join("; ");
    let csrf = jar.iter().find_map(|c| c.strip_prefix("rex_csrf=")).unwrap().to_string();
    let worklist = http.get(format!("{origin}/ui/worklist")).header("cookie", &session).send().await.unwrap();
    let worklist = worklist.text().await.unwrap();
    assert!(worklist.contains("Cardiology review, Oncology review"), "the chosen queues");
    assert!(
        worklist.contains("Non-ST elevation") && worklist.contains("upper-outer quadrant"),
        "both queues' referrals"
    );
    assert!(!worklist.contains("Crohn"), "another queue's referral is not on this worklist");
    // A claim in development mode assigns the chosen PractitionerRole.
    let task = app
        .search_ids("Task?owner=HealthcareService/oncology&priority=urgent")
        .await
        .into_iter()
        .next()
        .expect("an urgent oncology referral");
    let claimed = http
        .post(format!("{origin}/ui/referral/{task}/claim"))
        .header("cookie", &session)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(claimed.status(), StatusCode::SEE_OTHER);
    assert_eq!(claimed.headers()["location"], format!("/ui/referral/{task}?done=claim").as_str());
    assert_eq!(app.get(&format!("Task/{task}")).await.body["owner"]["reference"], "PractitionerRole/dev-1");
    app.cleanup().await;
}

/// A one-pixel PNG, as a partner's photo.
const PIXEL_PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";

/// A development session (no tokens) of a specialist serving `queues` as `PractitionerRole/dev-1`:
/// the HTTP client and its cookies.
async fn dev_session(origin: &str, queues: &[&str]) -> (reqwest::Client, String) {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let sign_in = http.get(format!("{origin}/ui/sign-in")).send().await.unwrap();
    let csrf_cookie = sign_in.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let csrf = csrf_cookie.trim_start_matches("rex_csrf=").to_string();
    let mut pairs =
        vec![("csrf", csrf.as_str()), ("role", "specialist"), ("practitioner_role", "PractitionerRole/dev-1")];
    pairs.extend(queues.iter().map(|q| ("queue", *q)));
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    let signed = http
        .post(format!("{origin}/ui/dev-sign-in"))
        .header("cookie", &csrf_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let jar: Vec<String> = signed
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_string())
        .collect();
    (http, jar.join("; "))
}

async fn page(http: &reqwest::Client, session: &str, url: &str) -> String {
    let reply = http.get(url).header("cookie", session).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK, "{url}");
    reply.text().await.unwrap()
}

/// The worklist row of a Task: from its link to the end of the row.
fn row_of<'a>(worklist: &'a str, task: &str) -> &'a str {
    let link = worklist.find(&format!(r#"href="/ui/referral/{task}""#)).unwrap_or_else(|| panic!("{task} listed"));
    let start = worklist[..link].rfind("<tr").unwrap();
    let end = link + worklist[link..].find("</tr>").unwrap();
    &worklist[start..end]
}

/// Without a browser: the worklist tells second opinions from referrals, shows the clinical
/// question and marks the partner's answer until the assigned specialist opens the referral; the
/// referral page shows whole-number results, the question first, the partner's photo inline
/// (served as stored, `nosniff`, sandboxed) and redirect choices without the sandbox.
#[tokio::test]
async fn the_worklist_marks_updates_and_the_referral_page_shows_what_the_partner_sent() {
    let app = TestApp::sqlite_with_ui(false).await;
    let origin = app.base.trim_end_matches("/fhir").to_string();
    let (http, session) = dev_session(&origin, &["cardiology", "oncology"]).await;
    let worklist = page(&http, &session, &format!("{origin}/ui/worklist")).await;
    let nstemi = app.search_ids("Task?owner=HealthcareService/cardiology&priority=stat").await[0].clone();
    let row = row_of(&worklist, &nstemi);
    assert!(row.contains(r#"<span class="kind kind-referral">Referral</span>"#), "{row}");
    assert!(
        row.contains(r#"<div class="question">please accept for invasive coronary angiography within 24 h"#),
        "{row}"
    );
    assert!(!row.contains("<br>"), "a compact row: {row}");
    assert!(
        worklist.contains(r#"<span class="kind kind-second-opinion">Second opinion</span>"#),
        "aortic stenosis, lung"
    );

    // The partner answers a request for information with a photo: the row is marked.
    let claim = json!({"resourceType": "Parameters", "parameter": [{"name": "owner", "valueReference": {"reference": "PractitionerRole/dev-1"}}]});
    assert_eq!(app.post(&format!("Task/{nstemi}/$claim"), &claim).await.status, StatusCode::OK);
    let ask = json!({"resourceType": "Parameters", "parameter": [{"name": "message", "valueString": "A photo of the rash, please"}]});
    assert_eq!(app.post(&format!("Task/{nstemi}/$request-information"), &ask).await.status, StatusCode::OK);
    let on_hold = page(&http, &session, &format!("{origin}/ui/referral/{nstemi}")).await;
    assert!(on_hold.contains("the SLA clock is paused") && on_hold.contains("Release to the queue"), "actions on hold");
    assert!(on_hold.contains(r#"<span class="badge sla-paused">Clock paused</span>"#));
    let request = app.search_ids("Communication?category=information-request").await[0].clone();
    let answer = json!({"resourceType": "Communication", "status": "completed",
        "inResponseTo": [{"reference": format!("Communication/{request}")}],
        "payload": [{"contentString": "Photo attached."},
                    {"contentAttachment": {"contentType": "image/png", "data": PIXEL_PNG, "title": "Rash on the forearm"}}]});
    let answered = app.post("Communication", &answer).await;
    assert_eq!(answered.status, StatusCode::CREATED, "{}", answered.body);
    let answer_id = answered.body["id"].as_str().unwrap().to_string();
    let worklist = page(&http, &session, &format!("{origin}/ui/worklist")).await;
    assert!(row_of(&worklist, &nstemi).contains(r#"<span class="tag updated">Updated: answer received</span>"#));

    // Opened by its specialist: the question first, the photo in the page; the mark is gone.
    let view = page(&http, &session, &format!("{origin}/ui/referral/{nstemi}")).await;
    let question = view.find(r#"<h2 id="h-question">Clinical question</h2>"#).expect("the question");
    assert!(question < view.find(r#"id="h-actions""#).unwrap() && question < view.find(r#"id="h-request""#).unwrap());
    let src = format!("/ui/file/Communication/{answer_id}/0");
    assert!(
        view.contains(&format!(r#"<img class="attachment" src="{src}" alt="Rash on the forearm""#)),
        "inline photo"
    );
    assert!(view.contains(r#"<select id="redirect-queue""#) && !view.contains(r#"<option value="sandbox">"#));
    assert!(view.contains(r#"<option value="oncology">"#));
    let worklist = page(&http, &session, &format!("{origin}/ui/worklist")).await;
    assert!(!row_of(&worklist, &nstemi).contains("Updated:"), "seen by the assigned specialist");
    let photo = http.get(format!("{origin}{src}")).header("cookie", &session).send().await.unwrap();
    assert_eq!(photo.status(), StatusCode::OK);
    assert_eq!(photo.headers()["content-type"], "image/png");
    assert_eq!(photo.headers()["x-content-type-options"], "nosniff");
    assert!(photo.headers()["content-security-policy"].to_str().unwrap().contains("sandbox"));
    use base64::Engine;
    assert_eq!(
        photo.bytes().await.unwrap().to_vec(),
        base64::engine::general_purpose::STANDARD.decode(PIXEL_PNG).unwrap()
    );

    // Whole-number results (ECOG 1) are shown.
    let lung = app.search_ids("Task?owner=HealthcareService/oncology&_count=100").await;
    let mut shown = false;
    for task in lung {
        let view = page(&http, &session, &format!("{origin}/ui/referral/{task}")).await;
        shown |= view.contains("ECOG performance status: 1");
    }
    assert!(shown, "the ECOG score of the lung referral is on its page");
    app.cleanup().await;
}
