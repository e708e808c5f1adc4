//! `rex send`: posts Bundles to a rex server the way a partner must (a SMART Backend Services
//! token from a signed assertion; transactions to the base, messages to `$process-message`) and
//! says, per file, what rex did with it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{Value, json};

use rex_server::interactions::intake::{OUTCOME_LINK, TASK_LINK};

use crate::report::print_file;

#[derive(clap::Args)]
pub struct SendArgs {
    /// FHIR base URL of the rex server, e.g. https://rex.example.org/fhir.
    #[arg(long)]
    server: String,
    /// The partner's client id (its SMART client_id in rex's security configuration).
    #[arg(long, requires = "key")]
    client_id: Option<String>,
    /// The partner's private key (PEM, EC P-384 or RSA) signing the client assertion.
    #[arg(long, requires = "client_id")]
    key: Option<PathBuf>,
    /// Send without a token, to a server started with --dev.
    #[arg(long, conflicts_with_all = ["client_id", "key"])]
    dev: bool,
    /// Scopes to ask for (the server grants at most the partner's configured ones).
    #[arg(long, default_value = "system/*.cruds")]
    scope: String,
    /// Print the raw responses (one, or a collection Bundle of them) instead of the summary.
    #[arg(long)]
    json: bool,
    /// The FHIR JSON or XML files to send: transaction, batch or message Bundles, or single
    /// resources. XML files are sent as XML (`application/fhir+xml`).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// Exit status 0 when every file was accepted, 1 when any was refused or could not be read (the
/// others are sent all the same), 2 when nothing could be sent (no token, server unreachable).
pub async fn run(args: SendArgs) -> ExitCode {
    match send_all(&args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("rex: {message}");
            ExitCode::from(2)
        }
    }
}

async fn send_all(args: &SendArgs) -> Result<bool, String> {
    if !args.dev && args.client_id.is_none() {
        return Err("give --client-id ID --key PEM (or --dev for a server without authentication)".into());
    }
    let base = args.server.trim_end_matches('/').to_string();
    let client = reqwest::Client::new();
    let token = match (&args.client_id, &args.key) {
        (Some(client_id), Some(key)) => Some(obtain_token(&client, &base, client_id, key, &args.scope).await?),
        _ => None,
    };
    let sender = Sender { client, base, token };
    let mut all_accepted = true;
    let mut responses = Vec::new();
    for file in &args.files {
        // A file that is no FHIR JSON or XML is reported, and the others are still sent.
        let file_content = match read_file(file) {
            Ok(file_content) => file_content,
            Err(message) => {
                all_accepted = false;
                let outcome = json!({"resourceType": "OperationOutcome", "issue": [
                    {"severity": "fatal", "code": "structure", "diagnostics": message}]});
                if args.json {
                    responses.push(outcome);
                } else {
                    print_file("UNREADABLE", file, "not sent", Some(&outcome));
                }
                continue;
            }
        };
        let (status, body) = sender.post(&file_content).await?;
        all_accepted &= status.is_success();
        if args.json {
            responses.push(body);
        } else {
            sender.summarise(file, status, &body).await;
        }
    }
    if args.json {
        let output = match responses.as_slice() {
            [one] => one.clone(),
            _ => json!({"resourceType": "Bundle", "type": "collection",
                        "entry": responses.iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()}),
        };
        println!("{}", serde_json::to_string_pretty(&output).unwrap_or_default());
    }
    Ok(all_accepted)
}

/// A file to send: the resource (to decide where it goes) and the bytes to send as they are.
struct FileContent {
    resource: Value,
    bytes: Vec<u8>,
    content_type: &'static str,
}

fn read_file(file: &Path) -> Result<FileContent, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let resource = rex_fhir::xml::parse_file(&bytes, usize::MAX).map_err(|issues| {
        format!("{} is not FHIR JSON or XML: {}", file.display(), crate::report::parse_issues(&issues))
    })?;
    let content_type =
        if rex_fhir::xml::looks_like_xml(&bytes) { "application/fhir+xml" } else { "application/fhir+json" };
    Ok(FileContent { resource, bytes, content_type })
}

/// The SMART Backend Services dance: discover the token endpoint, sign an assertion for it,
/// exchange it for an access token.
async fn obtain_token(
    client: &reqwest::Client,
    base: &str,
    client_id: &str,
    key: &Path,
    scope: &str,
) -> Result<String, String> {
    let key = rex_auth::SigningKey::from_pem_file(key)?;
    let discovery = format!("{base}/.well-known/smart-configuration");
    let configuration: Value = client
        .get(&discovery)
        .send()
        .await
        .map_err(|e| format!("cannot reach {discovery}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("{discovery} is not a SMART configuration: {e}"))?;
    let token_url = configuration["token_endpoint"]
        .as_str()
        .ok_or_else(|| format!("{discovery} names no token_endpoint (is the server in --dev mode? use --dev)"))?;
    let assertion = rex_auth::mint_client_assertion(&key, client_id, token_url, chrono::Utc::now().timestamp())?;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_assertion_type", rex_auth::CLIENT_ASSERTION_TYPE),
        ("client_assertion", assertion.as_str()),
        ("scope", scope),
    ];
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let response = client
        .post(token_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("cannot reach {token_url}: {e}"))?;
    let answer: Value = response.json().await.unwrap_or_default();
    match answer["access_token"].as_str() {
        Some(token) => Ok(token.to_string()),
        None => Err(format!(
            "the token request was refused: {} ({})",
            answer["error"].as_str().unwrap_or("no error code"),
            answer["error_description"].as_str().unwrap_or("no description")
        )),
    }
}

struct Sender {
    client: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Sender {
    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, url).header("accept", "application/fhir+json");
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Posts one file where it belongs: messages to `$process-message`, transactions and batches
    /// to the base, anything else as a create.
    async fn post(&self, file: &FileContent) -> Result<(reqwest::StatusCode, Value), String> {
        let resource = &file.resource;
        let resource_type = resource["resourceType"].as_str().unwrap_or_default();
        let url = match (resource_type, resource["type"].as_str()) {
            ("Bundle", Some("message")) => format!("{}/$process-message", self.base),
            ("Bundle", Some("transaction" | "batch")) => self.base.clone(),
            _ => format!("{}/{resource_type}", self.base),
        };
        let response = self
            .request(reqwest::Method::POST, &url)
            .header("content-type", file.content_type)
            .body(file.bytes.clone())
            .send()
            .await
            .map_err(|e| format!("cannot reach {url}: {e}"))?;
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    async fn summarise(&self, file: &Path, status: reqwest::StatusCode, body: &Value) {
        let status_text = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or_default());
        if !status.is_success() {
            print_file("REFUSED", file, &status_text, outcome_of(body));
            return;
        }
        let mut detail = status_text;
        let mut verdict = "accepted";
        if let Some(task) = referral_task(body) {
            let outcome = referral_outcome(body);
            detail.push_str(&format!(", referral {}: Task/{task}", outcome.unwrap_or("accepted")));
            match outcome {
                // Nothing was written, or the referral is withdrawn: its queue is no news.
                Some("unchanged") => {
                    verdict = "unchanged";
                    detail.push_str(", identical to what rex has: nothing written");
                }
                Some("revoked") => {
                    verdict = "revoked";
                    detail.push_str(", its Task is cancelled");
                }
                _ => {
                    if let Some(routing) = self.routing_of(&task).await {
                        detail.push_str(&routing);
                    }
                }
            }
        } else if let (Some(resource_type), Some(id)) = (body["resourceType"].as_str(), body["id"].as_str()) {
            detail.push_str(&format!(", {resource_type}/{id}"));
        }
        print_file(verdict, file, &detail, None);
    }

    /// `, queue Q, due D` from the referral's Task, when the token may read it.
    async fn routing_of(&self, task: &str) -> Option<String> {
        let url = format!("{}/Task/{task}", self.base);
        let task: Value = self.request(reqwest::Method::GET, &url).send().await.ok()?.json().await.ok()?;
        let queue = task["owner"]["reference"].as_str()?.trim_start_matches("HealthcareService/").to_string();
        let due = task["restriction"]["period"]["end"].as_str().unwrap_or("-");
        Some(format!(", queue {queue}, due {due}"))
    }
}

/// The OperationOutcome of a refusal: the body itself, or the one a response message carries.
fn outcome_of(body: &Value) -> Option<&Value> {
    if body["resourceType"] == "OperationOutcome" {
        return Some(body);
    }
    body["entry"].as_array()?.iter().map(|entry| &entry["resource"]).find(|r| r["resourceType"] == "OperationOutcome")
}

/// The referral Task of a transaction-response (its link) or of a response message (its focus).
fn referral_task(body: &Value) -> Option<String> {
    let from_link =
        body["link"].as_array().and_then(|links| links.iter().find(|l| l["relation"] == TASK_LINK)?["url"].as_str());
    let from_focus = body["entry"][0]["resource"]["focus"][0]["reference"].as_str().filter(|r| r.starts_with("Task/"));
    from_link.or(from_focus).and_then(|url| url.rsplit('/').next()).map(str::to_string)
}

/// `created`, `amended`, `unchanged` or `revoked`, from a transaction-response or a response
/// message.
fn referral_outcome(body: &Value) -> Option<&str> {
    let link = body["link"].as_array()?.iter().find(|l| l["relation"] == OUTCOME_LINK)?;
    link["url"].as_str()?.rsplit_once('#').map(|(_, outcome)| outcome)
}
