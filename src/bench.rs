//! `rex bench`: drives a rex server over HTTP with N concurrent clients and reports throughput,
//! latency percentiles, errors by status and (when it started the server itself) the server's RSS.
//!
//! Bundles are generated deterministically from `--seed`: each one is a template from
//! `fixtures/valid/` whose ServiceRequest and Patient identifier values get a unique suffix and whose
//! `urn:uuid:` fullUrls and references are all replaced, consistently, with fresh UUIDs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Bundles posted before the `search` and `mixed` scenarios start timing, unless `--prefill` says.
const DEFAULT_PREFILL: u64 = 200;
/// A specialist's worklist page: the queue's open referrals, due first. It asks for no total (as the
/// worklist does): a count grows with the queue, the first page does not.
const SEARCH_QUERY: &str = "Task?owner=HealthcareService/cardiology&status=requested&_sort=due&_count=20&_total=none";
/// The queue `mixed` claims from, and the specialist who claims.
const CLAIM_QUEUE: &str = "cardiology";
const CLAIM_OWNER: &str = "PractitionerRole/bench-specialist";

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// POST referral transaction Bundles to the FHIR base URL.
    Intake,
    /// POST the same Bundles to `/fhir/$validate` (validation only, nothing stored).
    Validate,
    /// GET the cardiology queue (open, sorted by due time, first page) after pre-filling the
    /// database with `--prefill` referrals.
    Search,
    /// After pre-filling: 6 in 10 requests intake, 3 the queue search, 1 `Task/$claim-next` on the
    /// cardiology queue.
    Mixed,
    /// After pre-filling: each search of [`QUERIES`] (every search parameter type rex advertises,
    /// on the resource types of a referral) `--count` times (default 20) by one client, with the
    /// latency percentiles of each.
    Queries,
}

/// The searches of `rex bench queries`, by parameter type. `{patient}` stands for the id of a
/// stored Patient. Composite parameters are not listed: rex does not support them (the
/// CapabilityStatement leaves them out), nor number ones: no referral resource has one.
const QUERIES: &[(&str, &str)] = &[
    ("token", "Observation?code=http://loinc.org|8867-4&_count=10"),
    ("token", "Condition?code=http://hl7.org/fhir/sid/icd-10-cm|I10&clinical-status=active&_count=10"),
    ("token", "ServiceRequest?priority=stat&_count=10"),
    ("string", "Patient?family=trevi&_count=10"),
    ("string", "Patient?name:contains=alber&_count=10"),
    ("date", "Observation?date=sa2020&_count=10"),
    ("date", "Condition?onset-date=ge2000&_count=10"),
    ("date", "Patient?birthdate=1968-03-14&_count=10"),
    ("date", "Observation?date=ge2020&_sort=date&_count=10"),
    ("reference", "Observation?subject=Patient/{patient}&_count=10"),
    ("reference", "Condition?patient={patient}&_count=10"),
    ("quantity", "Observation?value-quantity=gt100|http://unitsofmeasure.org|/min&_count=10"),
    ("uri", "Observation?_profile=http://hl7.org/fhir/StructureDefinition/vitalsigns&_count=10"),
    ("_include", "Observation?code=http://loinc.org|8867-4&_include=Observation:subject&_count=10"),
    ("_revinclude", "Patient?family=trevi&_revinclude=Condition:subject&_count=10"),
    ("worklist", SEARCH_QUERY),
];

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Intake => "intake",
            Scenario::Validate => "validate",
            Scenario::Search => "search",
            Scenario::Mixed => "mixed",
            Scenario::Queries => "queries",
        }
    }
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// How long to run, e.g. 20s, 500ms, 2m [default: 20s unless --count is given].
    #[arg(long, value_parser = parse_duration, conflicts_with = "count")]
    duration: Option<Duration>,
    /// Number of requests to send instead of running for a duration.
    #[arg(long)]
    count: Option<u64>,
    /// FHIR base URL of a running rex (loopback only), e.g. http://127.0.0.1:8080/fhir; without it,
    /// rex bench starts its own server on a temporary SQLite database.
    #[arg(long, conflicts_with = "database")]
    server: Option<String>,
    /// Start the own server on this database instead of a temporary SQLite file: sqlite://PATH, or
    /// postgres://USER@HOST/DB, where a fresh database is created next to DB for the run and dropped
    /// at the end.
    #[arg(long)]
    database: Option<String>,
    /// Referral Bundles posted (by the same clients, through the ordinary intake) before the timed
    /// phase of `search` and `mixed` [default: 200]; e.g. 100000 for a realistic queue.
    #[arg(long)]
    prefill: Option<u64>,
    /// Offered load in requests per second (open loop): request k is due at k/RATE seconds after
    /// the start, whether or not earlier ones have been answered, and its latency counts from when
    /// it was due, so time spent waiting for a free client is included. Without it, each client
    /// sends its next request as soon as the last one is answered (the rate the server sustains).
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// Adds this many Observation entries to every Bundle (copies of its template's Observations,
    /// each with a fresh id), to measure time and memory against Bundle size: about 1.5 KB each,
    /// so `--pad 10000` makes Bundles of about 15 MB.
    #[arg(long, default_value_t = 0)]
    pad: usize,
    /// Seed of the generated Bundles.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(format!("the rate must be a positive number of requests per second: {text:?}")),
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number.parse().map_err(|_| format!("invalid duration {text:?}"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("invalid duration unit in {text:?}: use ms, s or m")),
    };
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err(format!("the duration must be positive: {text:?}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// SplitMix64: a small deterministic generator, enough for unique, reproducible ids.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A version-4-shaped UUID derived from the seed, the Bundle number and the slot in the template.
fn uuid(seed: u64, bundle: u64, slot: u64) -> String {
    let hi = mix(seed ^ mix(bundle.wrapping_mul(0x1000_0001).wrapping_add(slot)));
    let lo = mix(hi ^ seed.rotate_left(17) ^ slot);
    let hi = (hi & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000;
    let lo = (lo & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xFFFF,
        hi & 0xFFFF,
        lo >> 48,
        lo & 0xFFFF_FFFF_FFFF
    )
}

struct Template {
    bundle: Value,
    resources: u64,
}

/// The referral Bundles in `fixtures/valid/`, sorted by file name.
fn load_templates(folder: &Path) -> Result<Vec<Template>, String> {
    let entries =
        std::fs::read_dir(folder).map_err(|e| format!("cannot read the fixtures folder {}: {e}", folder.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    let mut templates = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let bundle: Value = serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", file.display()))?;
        let resources = bundle["entry"].as_array().map_or(0, |entries| entries.len() as u64);
        templates.push(Template { bundle, resources });
    }
    if templates.is_empty() {
        return Err(format!("no JSON templates in {}", folder.display()));
    }
    Ok(templates)
}

/// Bundle number `n` for `seed`, with `pad` more Observations: the JSON body and its number of
/// resources.
fn generate(templates: &[Template], seed: u64, n: u64, pad: usize) -> (String, u64) {
    let template = &templates[(mix(seed ^ mix(n)) % templates.len() as u64) as usize];
    let mut bundle = template.bundle.clone();
    pad_with_observations(&mut bundle, pad);
    let suffix = format!("-b{seed}-{n}");
    if let Some(entries) = bundle["entry"].as_array_mut() {
        for entry in entries {
            let resource = &mut entry["resource"];
            let kind = resource["resourceType"].as_str().unwrap_or_default();
            if kind != "ServiceRequest" && kind != "Patient" {
                continue;
            }
            if let Some(identifiers) = resource["identifier"].as_array_mut() {
                for identifier in identifiers {
                    if let Some(Value::String(value)) = identifier.get_mut("value") {
                        value.push_str(&suffix);
                    }
                }
            }
        }
    }
    let text = serde_json::to_string(&bundle).unwrap_or_default();
    (replace_uuids(&text, seed, n), template.resources + pad as u64)
}

/// Appends `pad` copies of the Bundle's Observation entries, in turn; each copy gets a `urn:uuid:`
/// of its own, which [`replace_uuids`] then makes fresh like the others.
fn pad_with_observations(bundle: &mut Value, pad: usize) {
    let Some(entries) = bundle["entry"].as_array_mut() else { return };
    let observations: Vec<Value> =
        entries.iter().filter(|entry| entry["resource"]["resourceType"] == "Observation").cloned().collect();
    for (copy, observation) in observations.iter().cycle().take(pad).enumerate() {
        let mut entry = observation.clone();
        entry["fullUrl"] = Value::String(format!("urn:uuid:{}", uuid(u64::MAX, u64::MAX, copy as u64)));
        entries.push(entry);
    }
}

/// Replaces every distinct `urn:uuid:X` with a fresh deterministic UUID, the same one for each use of X.
fn replace_uuids(text: &str, seed: u64, n: u64) -> String {
    const PREFIX: &str = "urn:uuid:";
    let mut out = String::with_capacity(text.len());
    let mut fresh: HashMap<&str, String> = HashMap::new();
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        let start = at + PREFIX.len();
        out.push_str(&rest[..start]);
        match rest.get(start..start + 36) {
            Some(old) if old.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') => {
                let slot = fresh.len() as u64;
                out.push_str(fresh.entry(old).or_insert_with(|| uuid(seed, n, slot)));
                rest = &rest[start + 36..];
            }
            _ => rest = &rest[start..],
        }
    }
    out.push_str(rest);
    out
}

/// Accepts only loopback targets: the bench generates load and must not be pointed at others.
fn check_loopback(server: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(server).map_err(|e| format!("invalid --server URL {server:?}: {e}"))?;
    match url.host_str() {
        Some("127.0.0.1" | "localhost" | "[::1]") => Ok(server.trim_end_matches('/').to_string()),
        _ => Err(format!("--server must be a loopback address (127.0.0.1, localhost or [::1]), not {server:?}")),
    }
}

/// A rex started by the bench: killed, and its folder removed, when dropped.
struct OwnServer {
    child: Child,
    folder: PathBuf,
}

impl OwnServer {
    /// CPU time the server has used so far: (user, system) in seconds, from `/proc` (Linux).
    fn cpu(&self) -> Option<(f64, f64)> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // The fields after the command name, which is in parentheses and may hold spaces;
        // utime and stime are fields 14 and 15 of the line, in ticks of 1/100 s (USER_HZ).
        let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
        let ticks = |index: usize| fields.get(index)?.parse::<f64>().ok().map(|t| t / 100.0);
        Some((ticks(11)?, ticks(12)?))
    }

    fn rss(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let field = |name: &str| -> Option<u64> {
            let line = status.lines().find(|line| line.starts_with(name))?;
            line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()
        };
        Some((field("VmHWM:")?, field("VmRSS:")?))
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

/// The machine's CPU time so far, from the first line of `/proc/stat` (Linux), in ticks.
#[derive(Clone, Copy)]
struct MachineCpu {
    busy: u64,
    idle: u64,
    /// Time the hypervisor gave to other guests while this one wanted to run: on a shared VM it
    /// makes every figure lower, so the summary shows it.
    steal: u64,
}

impl MachineCpu {
    fn now() -> Option<MachineCpu> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let ticks: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).map(|t| t.parse().unwrap_or(0)).collect();
        let at = |index: usize| ticks.get(index).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal
        Some(MachineCpu { busy: at(0) + at(1) + at(2) + at(5) + at(6), idle: at(3) + at(4), steal: at(7) })
    }

    /// `machine: 1.4 of 2 cores busy, steal 12.0 %` for the time since `start`.
    fn describe_since(self, start: MachineCpu) -> String {
        let busy = self.busy.saturating_sub(start.busy) as f64;
        let idle = self.idle.saturating_sub(start.idle) as f64;
        let steal = self.steal.saturating_sub(start.steal) as f64;
        let total = (busy + idle + steal).max(1.0);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        format!(
            "machine: {:.1} of {cores} cores busy, steal {:.1} % (CPU time the hypervisor gave to other guests)",
            busy / total * cores as f64,
            steal / total * 100.0
        )
    }
}

/// Where the own server keeps its data.
enum OwnDatabase {
    /// A SQLite file in the server's temporary folder.
    TempSqlite,
    /// A database URL given with `--database`.
    Url(String),
}

async fn start_server(client: &reqwest::Client, database: &OwnDatabase) -> Result<(OwnServer, String), String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| format!("cannot find a free port: {e}"))?
        .port();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let folder = std::env::temp_dir().join(format!("rex-bench-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&folder).map_err(|e| format!("cannot create {}: {e}", folder.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the rex executable: {e}"))?;
    let log = std::fs::File::create(folder.join("server.log")).map_err(|e| format!("cannot create the log: {e}"))?;
    let child = Command::new(exe)
        .args(["serve", "--dev", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--database")
        .arg(match database {
            OwnDatabase::TempSqlite => format!("sqlite://{}", folder.join("bench.db").display()),
            OwnDatabase::Url(url) => url.clone(),
        })
        .arg("--routing")
        .arg("config/routing.toml")
        .arg("--profiles")
        .arg("profiles")
        .env("REX_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start rex serve: {e}"))?;
    let mut server = OwnServer { child, folder };
    let base = format!("http://127.0.0.1:{port}/fhir");
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            let log = std::fs::read_to_string(server.folder.join("server.log")).unwrap_or_default();
            return Err(format!("rex serve exited early with {status}:\n{log}"));
        }
        if client.get(format!("{base}/metadata")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok((server, base));
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err("rex serve did not answer /fhir/metadata within 120 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What each client measured.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    ok: u64,
    resources: u64,
    errors: BTreeMap<String, u64>,
}

/// Shared by the clients of a run.
struct Run {
    client: reqwest::Client,
    base: String,
    templates: Vec<Template>,
    seed: u64,
    /// Observations added to every Bundle.
    pad: usize,
    /// Bundle numbers come from here (the search warm-up uses the first ones).
    next_bundle: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
}

/// One timed phase: work is handed out by a counter, bounded by a count or a deadline, and paced
/// by a schedule when a rate is offered.
struct Phase {
    scenario: Scenario,
    issued: AtomicU64,
    limit: Option<u64>,
    deadline: Option<Instant>,
    /// The start and the requests per second of an open-loop schedule.
    schedule: Option<(Instant, f64)>,
}

impl Phase {
    /// The next request to make and when it is due, if the phase is not over.
    fn take(&self) -> Option<(Request, Option<Instant>)> {
        if self.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return None;
        }
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let due = self.schedule.map(|(start, rate)| start + Duration::from_secs_f64(n as f64 / rate));
        if due.zip(self.deadline).is_some_and(|(due, deadline)| due >= deadline) {
            return None;
        }
        self.limit.is_none_or(|limit| n < limit).then(|| (Request::of(self.scenario, n), due))
    }
}

/// What one request of a scenario does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Request {
    Intake,
    Validate,
    Search,
    ClaimNext,
}

impl Request {
    /// The request number `n` of a scenario makes.
    fn of(scenario: Scenario, n: u64) -> Request {
        match scenario {
            Scenario::Intake => Request::Intake,
            Scenario::Validate => Request::Validate,
            Scenario::Search | Scenario::Queries => Request::Search,
            Scenario::Mixed => match n % 10 {
                0..=5 => Request::Intake,
                6..=8 => Request::Search,
                _ => Request::ClaimNext,
            },
        }
    }
}

impl Run {
    /// Makes one request; its latency counts from `due` when it has a schedule, else from sending.
    async fn one(&self, kind: Request, due: Option<Instant>, tally: &mut Tally) {
        let mut sent = 0;
        let request = match kind {
            Request::ClaimNext => {
                let parameters = serde_json::json!({"resourceType": "Parameters", "parameter": [
                    {"name": "queue", "valueCode": CLAIM_QUEUE},
                    {"name": "owner", "valueReference": {"reference": CLAIM_OWNER}},
                ]});
                self.client
                    .post(format!("{}/Task/$claim-next", self.base))
                    .header("Content-Type", "application/fhir+json")
                    .body(parameters.to_string())
            }
            Request::Intake | Request::Validate => {
                let n = self.next_bundle.fetch_add(1, Ordering::Relaxed);
                let (body, resources) = generate(&self.templates, self.seed, n, self.pad);
                let url = match kind {
                    Request::Validate => format!("{}/$validate", self.base),
                    _ => self.base.clone(),
                };
                sent = resources;
                self.client.post(url).header("Content-Type", "application/fhir+json").body(body)
            }
            Request::Search => self.client.get(format!("{}/{SEARCH_QUERY}", self.base)),
        };
        if let Some(due) = due {
            tokio::time::sleep_until(due.into()).await;
        }
        let started = due.unwrap_or_else(Instant::now);
        let outcome = match request.send().await {
            Ok(response) => {
                let status = response.status();
                response.bytes().await.map(|body| (status, body))
            }
            Err(e) => Err(e),
        };
        tally.latencies_us.push(started.elapsed().as_micros() as u64);
        let failed = match outcome {
            Ok((status, body)) if status.is_success() => {
                tally.ok += 1;
                tally.resources += sent;
                if kind == Request::Search {
                    let page: Value = serde_json::from_slice(&body).unwrap_or_default();
                    tally.resources += page["entry"].as_array().map_or(0, |entries| entries.len() as u64);
                }
                false
            }
            Ok((status, _)) => {
                *tally.errors.entry(status.as_u16().to_string()).or_default() += 1;
                true
            }
            Err(e) => {
                let kind = if e.is_timeout() { "timeout" } else { "connection" };
                *tally.errors.entry(kind.to_string()).or_default() += 1;
                true
            }
        };
        self.done.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Runs one phase with `clients` concurrent tasks, printing a progress line every second.
async fn drive(run: &Arc<Run>, clients: usize, phase: Phase) -> Result<(Tally, Duration), String> {
    run.done.store(0, Ordering::Relaxed);
    run.failed.store(0, Ordering::Relaxed);
    let phase = Arc::new(phase);
    let finished = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let progress = {
        let (run, finished, name) = (run.clone(), finished.clone(), phase.scenario.name());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            ticker.tick().await;
            let mut last = 0;
            loop {
                ticker.tick().await;
                if finished.load(Ordering::Relaxed) {
                    break;
                }
                let done = run.done.load(Ordering::Relaxed);
                eprintln!(
                    "[{:>5.1} s] {name}: {done} done, {} failed, {} in the last second",
                    started.elapsed().as_secs_f64(),
                    run.failed.load(Ordering::Relaxed),
                    done - last
                );
                last = done;
            }
        })
    };
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let (run, phase) = (run.clone(), phase.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            while let Some((request, due)) = phase.take() {
                run.one(request, due, &mut tally).await;
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await.map_err(|e| format!("a client task failed: {e}"))?;
        total.latencies_us.extend(tally.latencies_us);
        total.ok += tally.ok;
        total.resources += tally.resources;
        for (status, count) in tally.errors {
            *total.errors.entry(status).or_default() += count;
        }
    }
    let elapsed = started.elapsed();
    finished.store(true, Ordering::Relaxed);
    progress.abort();
    Ok((total, elapsed))
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

pub async fn run(args: BenchArgs) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let templates = load_templates(Path::new("fixtures/valid"))?;
    let mut fresh_postgres = None;
    let (database, target) = match &args.database {
        None => (OwnDatabase::TempSqlite, "own server, temporary SQLite".to_string()),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            let name = format!("rex_bench_{}_{nanos}", std::process::id());
            let fresh = rex_store::create_postgres_database(url, &name)
                .await
                .map_err(|e| format!("cannot create a fresh PostgreSQL database: {e}"))?;
            fresh_postgres = Some((url.clone(), name.clone()));
            (OwnDatabase::Url(fresh), format!("own server, fresh PostgreSQL database {name}"))
        }
        Some(url) => (OwnDatabase::Url(url.clone()), format!("own server, {url}")),
    };
    let started = match &args.server {
        Some(server) => Ok((None, check_loopback(server)?)),
        None => {
            eprintln!("rex bench: starting rex serve ({target})");
            start_server(&client, &database).await.map(|(server, base)| (Some(server), base))
        }
    };
    let result = match started {
        Ok((server, base)) => measure(&args, client, templates, server, base, &target).await,
        Err(e) => Err(e),
    };
    if let Some((url, name)) = fresh_postgres
        && let Err(e) = rex_store::drop_postgres_database(&url, &name).await
    {
        eprintln!("rex bench: cannot drop the database {name}: {e}");
    }
    result
}

async fn measure(
    args: &BenchArgs,
    client: reqwest::Client,
    templates: Vec<Template>,
    server: Option<OwnServer>,
    base: String,
    target: &str,
) -> Result<(), String> {
    let run = Arc::new(Run {
        client,
        base,
        templates,
        seed: args.seed,
        pad: args.pad,
        next_bundle: AtomicU64::new(0),
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let prefill = match args.scenario {
        Scenario::Search | Scenario::Mixed | Scenario::Queries => args.prefill.unwrap_or(DEFAULT_PREFILL),
        Scenario::Intake | Scenario::Validate => args.prefill.unwrap_or(0),
    };
    if prefill > 0 {
        eprintln!("rex bench: pre-filling, posting {prefill} referral Bundles");
        let fill = Phase {
            scenario: Scenario::Intake,
            issued: AtomicU64::new(0),
            limit: Some(prefill),
            deadline: None,
            schedule: None,
        };
        let (tally, elapsed) = drive(&run, args.clients, fill).await?;
        if !tally.errors.is_empty() {
            return Err(format!("pre-filling failed: {:?}", tally.errors));
        }
        eprintln!("rex bench: pre-filled in {:.1} s", elapsed.as_secs_f64());
    }
    if args.scenario == Scenario::Queries {
        let result = measure_queries(&run, args.count.unwrap_or(20)).await;
        drop(server);
        return result;
    }
    let duration = match (args.count, args.duration) {
        (Some(_), _) => None,
        (None, duration) => Some(duration.unwrap_or(Duration::from_secs(20))),
    };
    let phase = Phase {
        scenario: args.scenario,
        issued: AtomicU64::new(0),
        limit: args.count,
        deadline: duration.map(|d| Instant::now() + d),
        schedule: args.rate.map(|rate| (Instant::now(), rate)),
    };
    let machine_before = MachineCpu::now();
    let server_cpu_before = server.as_ref().and_then(OwnServer::cpu);
    let (mut tally, elapsed) = drive(&run, args.clients, phase).await?;
    let machine = machine_before.zip(MachineCpu::now()).map(|(before, after)| after.describe_since(before));
    let server_cpu = server.as_ref().and_then(OwnServer::cpu).zip(server_cpu_before);
    let rss = server.as_ref().and_then(OwnServer::rss);
    drop(server);

    tally.latencies_us.sort_unstable();
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let requests = tally.latencies_us.len();
    let target = if args.server.is_some() { "given server" } else { target };
    let offered = args.rate.map(|rate| format!(", {rate} requests/s offered")).unwrap_or_default();
    println!(
        "rex bench {}: {} clients{offered}, {requests} requests in {seconds:.1} s, seed {}, {target} {}",
        args.scenario.name(),
        args.clients.max(1),
        args.seed,
        run.base
    );
    let unit = match args.scenario {
        Scenario::Search | Scenario::Queries => "search result pages",
        Scenario::Mixed => "successful requests of all kinds",
        Scenario::Intake | Scenario::Validate => "successful Bundles",
    };
    println!(
        "throughput: {:.1} Bundles/s ({unit}), {:.1} resources/s",
        tally.ok as f64 / seconds,
        tally.resources as f64 / seconds
    );
    let sorted = &tally.latencies_us;
    println!(
        "latency ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
        percentile(sorted, 0.50),
        percentile(sorted, 0.90),
        percentile(sorted, 0.99),
        sorted.last().map_or(0.0, |&max| max as f64 / 1000.0)
    );
    if tally.errors.is_empty() {
        println!("errors: none");
    } else {
        let errors: Vec<String> = tally.errors.iter().map(|(status, count)| format!("{status} x{count}")).collect();
        println!("errors: {}", errors.join(", "));
    }
    if let Some(((user, system), (user_before, system_before))) = server_cpu {
        let per_request = |seconds: f64| seconds * 1000.0 / tally.ok.max(1) as f64;
        let (user, system) = (per_request(user - user_before), per_request(system - system_before));
        println!("server CPU: {:.2} ms per successful request (user {user:.2}, system {system:.2})", user + system);
    }
    if let Some(machine) = machine {
        println!("{machine}");
    }
    if let Some((hwm, rss)) = rss {
        println!(
            "server RSS: peak (VmHWM) {:.1} MB, at end (VmRSS) {:.1} MB",
            hwm as f64 / 1024.0,
            rss as f64 / 1024.0
        );
    }
    if tally.errors.is_empty() { Ok(()) } else { Err("some requests failed".into()) }
}

/// `rex bench queries`: each of [`QUERIES`] `times` times in a row, one line per search.
async fn measure_queries(run: &Run, times: u64) -> Result<(), String> {
    let get = |path: String| async move {
        let started = Instant::now();
        let response = run.client.get(format!("{}/{path}", run.base)).send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((status, body, started.elapsed()))
    };
    let (_, first, _) = get("Patient?_count=1&_total=none".into()).await?;
    let patient = first["entry"][0]["resource"]["id"].as_str().ok_or("no Patient is stored")?.to_string();
    println!("rex bench queries: {times} times each, one client, {}", run.base);
    println!("| parameter type | search | p50 ms | p99 ms | max ms | matches (total) |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut failed = false;
    for (kind, query) in QUERIES {
        let path = query.replace("{patient}", &patient);
        let mut latencies = Vec::new();
        let mut outcome = String::new();
        for _ in 0..times {
            let (status, body, elapsed) = get(path.clone()).await?;
            latencies.push(elapsed.as_micros() as u64);
            outcome = match status.is_success() {
                true => body["total"].as_i64().map_or("no total".to_string(), |total| total.to_string()),
                false => {
                    failed = true;
                    format!("{status} {}", body["issue"][0]["code"].as_str().unwrap_or_default())
                }
            };
        }
        latencies.sort_unstable();
        println!(
            "| {kind} | `{query}` | {:.1} | {:.1} | {:.1} | {outcome} |",
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            latencies.last().map_or(0.0, |&max| max as f64 / 1000.0)
        );
    }
    if failed { Err("some searches failed".into()) } else { Ok(()) }
}
