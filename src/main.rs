//! The `rex` command: `rex serve` runs the FHIR server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

mod bench;
mod profiles_doc;
mod report;
mod scorecard;
mod send;
mod sql_log;

use clap::{Parser, Subcommand};
use rex_referral::RoutingConfig;
use rex_server::security::Security;
use rex_server::validation::{PartnerProfiles, load_validator, load_validator_from};

include!(concat!(env!("OUT_DIR"), "/profiles.rs"));
use rex_server::{AppState, Config};
use rex_store::Store;
use tokio::net::TcpListener;

/// Intake parses, copies and validates JSON trees of thousands of small allocations per Bundle:
/// with glibc's allocator, malloc and free were about a fifth of the server's CPU time
/// (BENCHMARKS.md, 2026-12-02).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

unsafe extern "C" {
    /// mimalloc's `mi_option_set` (linked in by the `mimalloc` crate).
    fn mi_option_set(option: i32, value: std::ffi::c_long);
    /// The C library's `signal`.
    fn signal(signum: i32, handler: usize) -> usize;
}
/// `mi_option_purge_delay` in the mimalloc v3 sources of libmimalloc-sys 0.1.49 (Cargo.lock).
const MI_OPTION_PURGE_DELAY: i32 = 15;

/// mimalloc hands freed pages back to the OS after a delay (10 ms, ten times that for arenas); under
/// intake bursts that kept the server's peak RSS at 178 MB instead of 128 MB (BENCHMARKS.md), for
/// no measurable throughput. Purging at once keeps it under the 150 MB target.
fn purge_freed_memory_at_once() {
    // SAFETY: setting an option is allowed at any time; the value is a plain integer.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}

/// Rust programs ignore SIGPIPE, so `rex validate ... | head` panicked on its next write once
/// `head` had gone. The commands that only write to their output end quietly instead, as Unix tools
/// do; those with network connections (the server, `send`, `bench`, `report`) keep ignoring it, so
/// that a peer closing a connection ends a write with an error instead of the process.
fn end_quietly_when_output_closes() {
    const SIGPIPE: i32 = 13;
    const SIG_DFL: usize = 0;
    // SAFETY: restores a signal's default disposition; rex installs no handler of its own for it.
    unsafe { signal(SIGPIPE, SIG_DFL) };
}

#[derive(Parser)]
#[command(name = "rex", version, about = "rex: FHIR R4 referral and second-opinion exchange")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the FHIR server.
    Serve(Box<ServeArgs>),
    /// Validate FHIR JSON files with the server's validator; exit 0 when no file has errors,
    /// 1 when any has, 2 for usage errors or unreadable input.
    Validate(ValidateArgs),
    /// Benchmark a rex server (its own on a temporary SQLite database unless --server is given).
    Bench(bench::BenchArgs),
    /// Send Bundles to a rex server as a partner (SMART Backend Services token) and summarise
    /// what rex did with each; exit 0 when all were accepted, 1 when any was refused or unreadable.
    Send(send::SendArgs),
    /// Mint a staff (OIDC) bearer token with a development key, for local use and tests.
    Token(TokenArgs),
    /// Documentation generated from the profiles folder: `rex profiles doc` (docs/profiles.md).
    Profiles(profiles_doc::ProfilesArgs),
    /// Reports read from the database: `rex report scorecard --partner ID` (conformance scorecard).
    Report(scorecard::ReportArgs),
    /// Keys: `rex keys jwks KEY.pem` prints the public JWKS of a private key (EC P-384 or RSA), as
    /// a partner registers it or as the `[oidc]` section's `jwks` takes a development staff key.
    Keys(KeysArgs),
}

#[derive(clap::Args)]
struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print the JWKS (public half, `kid` = RFC 7638 thumbprint) of a PEM private key.
    Jwks {
        /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
}

#[derive(clap::Args)]
struct TokenArgs {
    /// The security configuration whose [oidc] section (issuer, audience, claim names) the token follows.
    #[arg(long, env = "REX_SECURITY")]
    security: PathBuf,
    /// The development private key (PEM); its public JWKS must be the [oidc] jwks.
    #[arg(long)]
    key: PathBuf,
    /// The user (the `sub` claim).
    #[arg(long)]
    subject: String,
    /// specialist, coordinator or admin.
    #[arg(long, value_parser = ["specialist", "coordinator", "admin"])]
    role: String,
    /// The user's PractitionerRole (`PractitionerRole/<id>`); required for specialists.
    #[arg(long)]
    practitioner_role: Option<String>,
    /// A queue the user serves; repeatable.
    #[arg(long = "queue")]
    queues: Vec<String>,
    /// Lifetime of the token in seconds.
    #[arg(long, default_value_t = 3600)]
    lifetime: i64,
}

#[derive(clap::Args)]
struct ValidateArgs {
    /// Profile (canonical URL) to validate against, besides the base spec and meta.profile.
    #[arg(long)]
    profile: Vec<String>,
    /// Extra FHIR package (folder or .tgz) to load; repeatable.
    #[arg(long = "package")]
    packages: Vec<PathBuf>,
    /// Folder of rex's conformance resources [default: the profiles built into rex].
    #[arg(long, env = "REX_PROFILES")]
    profiles: Option<PathBuf>,
    /// For people: a verdict line per file and a line per issue, instead of OperationOutcome JSON.
    #[arg(long)]
    summary: bool,
    /// A meta.profile rex does not know: warn (checked against the base spec and the profiles rex
    /// knows) or reject, as `rex serve --unknown-profiles` does for intake.
    #[arg(long, env = "REX_UNKNOWN_PROFILES", default_value = "warn")]
    unknown_profiles: rex_validation::UnknownProfiles,
    /// The files to validate.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "REX_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Database URL: sqlite://PATH (created on first start) or postgres://USER@HOST/DB.
    #[arg(long = "database", env = "REX_DATABASE_URL", default_value = "sqlite://rex-data/rex.db")]
    database_url: String,
    /// Public FHIR base URL used in Location headers and Bundle links [default: http://LISTEN/fhir].
    #[arg(long, env = "REX_BASE_URL")]
    base_url: Option<String>,
    /// Load the sample referrals from the demo folder when the database is empty.
    #[arg(long, env = "REX_DEMO")]
    demo: bool,
    /// Folder of transaction Bundles loaded by --demo.
    #[arg(long, env = "REX_DEMO_DIR", default_value = "fixtures/valid")]
    demo_dir: PathBuf,
    /// Routing rules file (queues, rules, service-level times).
    #[arg(long, env = "REX_ROUTING", default_value = "config/routing.toml")]
    routing: PathBuf,
    /// Folder of rex's conformance resources (profiles, value sets; partner folders under partners/).
    #[arg(long, env = "REX_PROFILES", default_value = "profiles")]
    profiles: PathBuf,
    /// Extra FHIR package to validate against (folder or .tgz); repeatable, or comma-separated in REX_PACKAGES.
    #[arg(long = "package", env = "REX_PACKAGES", value_delimiter = ',')]
    packages: Vec<PathBuf>,
    /// Run without authentication, for local development only: refused unless listening on loopback.
    #[arg(long, env = "REX_DEV", conflicts_with = "security")]
    dev: bool,
    /// Security configuration (partners, keys, scopes, identity provider): see docs/security.md.
    /// Required unless --dev.
    #[arg(long, env = "REX_SECURITY")]
    security: Option<PathBuf>,
    /// EC P-384 private key (PEM) signing rex's access tokens; shared by all instances behind one
    /// token URL [default: a fresh key at each start, so tokens do not survive a restart].
    #[arg(long, env = "REX_TOKEN_KEY")]
    token_key: Option<PathBuf>,
    /// The token URL partners put in their assertions' `aud` [default: the base URL's origin + /auth/token].
    #[arg(long, env = "REX_TOKEN_URL")]
    token_url: Option<String>,
    /// Also serve partners over mutual TLS on this address (needs --tls-cert, --tls-key, --client-ca).
    #[arg(long, env = "REX_MTLS_LISTEN", requires_all = ["tls_cert", "tls_key", "client_ca"])]
    mtls_listen: Option<SocketAddr>,
    /// Server certificate chain (PEM) of the mTLS listener.
    #[arg(long, env = "REX_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM) of the mTLS listener.
    #[arg(long, env = "REX_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that issue partners' client certificates.
    #[arg(long, env = "REX_CLIENT_CA")]
    client_ca: Option<PathBuf>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "REX_MAX_BODY_BYTES", default_value_t = rex_server::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// JSON request bodies over this many bytes are large: only --large-bodies of them are worked
    /// on at once (parsing and checking a Bundle takes about 25 times its size in memory).
    #[arg(long, env = "REX_LARGE_BODY_BYTES", default_value_t = rex_server::DEFAULT_LARGE_BODY_BYTES)]
    large_body_bytes: usize,
    /// Large JSON request bodies worked on at once; one more is answered 503 with Retry-After.
    #[arg(long, env = "REX_LARGE_BODIES", default_value_t = rex_server::DEFAULT_LARGE_BODY_SLOTS)]
    large_bodies: usize,
    /// Seconds between two runs of the SLA escalation of overdue referrals (0: never).
    #[arg(long, env = "REX_ESCALATION_INTERVAL", default_value_t = 60)]
    escalation_interval: u64,
    /// Seconds between two runs of the partner notification delivery (0: never).
    #[arg(long, env = "REX_DELIVERY_INTERVAL", default_value_t = 2)]
    delivery_interval: u64,
    /// Days scorecard submissions are kept before the purge deletes them (0: forever).
    #[arg(long, env = "REX_RETAIN_SUBMISSIONS_DAYS", default_value_t = 400)]
    retain_submissions_days: u32,
    /// Days AuditEvents are kept before the purge deletes them (0: forever).
    #[arg(long, env = "REX_RETAIN_AUDIT_DAYS", default_value_t = 2190)]
    retain_audit_days: u32,
    /// Days dead partner notifications are kept before the purge deletes them (0: forever).
    #[arg(long, env = "REX_RETAIN_DEAD_NOTIFICATIONS_DAYS", default_value_t = 30)]
    retain_dead_notifications_days: u32,
    /// Seconds between two runs of the retention purge (0: never).
    #[arg(long, env = "REX_RETENTION_INTERVAL", default_value_t = 3600)]
    retention_interval: u64,
    /// Seconds a delivering instance holds a partner notification before another instance may
    /// take it (when the first died mid-delivery); longer than the slowest delivery (10 s).
    #[arg(long, env = "REX_DELIVERY_LEASE", default_value_t = 60, value_parser = clap::value_parser!(u64).range(11..))]
    delivery_lease: u64,
    /// rex's client certificate (PEM) for partner notification endpoints that ask for mutual TLS.
    #[arg(long, env = "REX_DELIVERY_CLIENT_CERT", requires = "delivery_client_key")]
    delivery_client_cert: Option<PathBuf>,
    /// The private key (PEM) of --delivery-client-cert.
    #[arg(long, env = "REX_DELIVERY_CLIENT_KEY", requires = "delivery_client_cert")]
    delivery_client_key: Option<PathBuf>,
    /// Certificate authorities (PEM) trusted for partner notification endpoints besides the system's.
    #[arg(long, env = "REX_DELIVERY_CA")]
    delivery_ca: Option<PathBuf>,
    /// A host notifications may go to whatever its addresses (loopback, private...), also over
    /// http; repeatable or comma-separated.
    #[arg(long = "delivery-allow-host", env = "REX_DELIVERY_ALLOW_HOSTS", value_delimiter = ',')]
    delivery_allow_hosts: Vec<String>,
    /// The mail relay (host:port) escalation alerts to `mailto:` targets go through.
    #[arg(long, env = "REX_SMTP_RELAY", requires = "smtp_from")]
    smtp_relay: Option<String>,
    /// The sender address of escalation alert mails.
    #[arg(long, env = "REX_SMTP_FROM", requires = "smtp_relay")]
    smtp_from: Option<String>,
    /// How the relay is reached: starttls (required), tls (from the first byte) or none (plain SMTP).
    #[arg(long, env = "REX_SMTP_TLS", default_value = "starttls")]
    smtp_tls: rex_server::alerts::SmtpTls,
    /// The user name at the relay, when it wants one; the password is read from REX_SMTP_PASSWORD.
    #[arg(long, env = "REX_SMTP_USER", requires = "smtp_relay")]
    smtp_user: Option<String>,
    /// rex's client id at the staff identity provider (`[oidc]` in --security): staff then sign in to
    /// the worklist there (OpenID Connect, authorization code with PKCE); the client secret, for a
    /// confidential client, is read from REX_OIDC_CLIENT_SECRET.
    #[arg(long, env = "REX_OIDC_CLIENT_ID")]
    oidc_client_id: Option<String>,
    /// rex's sign-in callback as browsers reach it, registered with the provider (default: the base
    /// URL's origin + /ui/callback).
    #[arg(long, env = "REX_OIDC_REDIRECT_URL", requires = "oidc_client_id")]
    oidc_redirect_url: Option<String>,
    /// Scopes asked for at sign-in besides `openid`; repeatable or comma-separated.
    #[arg(long = "oidc-scope", env = "REX_OIDC_SCOPES", value_delimiter = ',', requires = "oidc_client_id")]
    oidc_scopes: Vec<String>,
    /// Seconds in-flight requests get to finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "REX_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    shutdown_timeout: u64,
    /// Do not serve the staff worklist (the web UI under /ui).
    #[arg(long, env = "REX_NO_UI")]
    no_ui: bool,
    /// Deepest JSON nesting accepted in a request body.
    #[arg(long, env = "REX_MAX_JSON_DEPTH", default_value_t = rex_fhir::json::DEFAULT_MAX_DEPTH)]
    max_json_depth: usize,
    /// A meta.profile rex does not know: warn (the resource is checked against the base spec and
    /// the profiles rex knows) or reject; a partner's `unknown_profiles` overrides it.
    #[arg(long, env = "REX_UNKNOWN_PROFILES", default_value = "warn")]
    unknown_profiles: rex_validation::UnknownProfiles,
    /// The video link of a booked telehealth consult: an https:// URL where `{room}` becomes a
    /// fresh unguessable id and `{appointment}` the Appointment id.
    #[arg(long, env = "REX_VIDEO_LINK_TEMPLATE", default_value = rex_server::interactions::consult::DEFAULT_VIDEO_LINK_TEMPLATE)]
    video_link_template: String,
    /// Minutes before a booked consult that the partner's reminder goes out (0: no reminders).
    #[arg(long, env = "REX_CONSULT_REMINDER", default_value_t = 1440)]
    consult_reminder: u64,
    /// Seconds between two runs of the consult reminders.
    #[arg(long, env = "REX_CONSULT_REMINDER_INTERVAL", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    consult_reminder_interval: u64,
    /// Seconds a search may run (decimals allowed); past it the database work is cancelled and the
    /// client answered 400 too-costly.
    #[arg(long, env = "REX_SEARCH_TIMEOUT", default_value_t = rex_store::DEFAULT_SEARCH_TIMEOUT.as_secs_f64(),
          value_parser = parse_seconds)]
    search_timeout: f64,
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds.is_finite() => Ok(seconds),
        _ => Err(format!("a positive number of seconds, not {text:?}")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    purge_freed_memory_at_once();
    if let Err(message) = init_logging() {
        eprintln!("rex: {message}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    if matches!(cli.command, Command::Validate(_) | Command::Profiles(_) | Command::Token(_) | Command::Keys(_)) {
        end_quietly_when_output_closes();
    }
    let result = match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Validate(args) => return validate(args),
        Command::Bench(args) => bench::run(args).await,
        Command::Send(args) => return send::run(args).await,
        Command::Token(args) => token(args),
        Command::Profiles(args) => return profiles_doc::run(args),
        Command::Report(args) => scorecard::run(args).await,
        Command::Keys(args) => keys(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("rex: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stdout: `REX_LOG` filters (default `info,sqlx=warn`), `REX_LOG_FORMAT` is `text`
/// (default; colours only on a terminal) or `json` (one JSON object per line). sqlx's statement
/// events are logged through [`sql_log::Statements`], with their SQL text cut short.
fn init_logging() -> Result<(), String> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = || match std::env::var("REX_LOG") {
        Ok(text) => tracing_subscriber::EnvFilter::try_new(&text).map_err(|e| format!("REX_LOG={text:?}: {e}")),
        Err(_) => Ok(tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
    };
    let output = tracing_subscriber::fmt::layer();
    let output: Box<dyn Layer<_> + Send + Sync> = match std::env::var("REX_LOG_FORMAT").as_deref() {
        Ok("json") => Box::new(output.json()),
        Ok("text") | Err(_) => Box::new(output.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))),
        Ok(other) => return Err(format!("REX_LOG_FORMAT must be text or json, not {other:?}")),
    };
    let sqlx_off = format!("{}=off", sql_log::SQLX_TARGET).parse().map_err(|e| format!("{e}"))?;
    let (statements, taken) = sql_log::Statements::new();
    tracing_subscriber::registry()
        .with(output.with_filter(filter()?.add_directive(sqlx_off)))
        .with(statements.with_filter(filter()?))
        .init();
    sql_log::spawn_logger(taken).map_err(|e| format!("cannot start the SQL log: {e}"))
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    if args.dev && !args.listen.ip().is_loopback() {
        return Err(format!(
            "--dev serves without authentication and is refused on {}: listen on a loopback address (127.0.0.1 or [::1])",
            args.listen
        ));
    }
    if !args.dev && args.security.is_none() {
        return Err("no authentication configured: give --security FILE (see docs/security.md), \
                    or --dev for local use on loopback"
            .into());
    }
    let signal = shutdown_signal()?;
    let routing_text = std::fs::read_to_string(&args.routing)
        .map_err(|e| format!("cannot read the routing rules {}: {e}", args.routing.display()))?;
    let routing = RoutingConfig::from_toml(&routing_text)
        .map_err(|e| format!("the routing rules {} are invalid: {e}", args.routing.display()))?;
    let packages: Vec<&std::path::Path> = args.packages.iter().map(PathBuf::as_path).collect();
    let validator = Arc::new(load_validator(&args.profiles, &packages)?);
    let store = Store::connect(&args.database_url).await.map_err(|e| format!("cannot open the database: {e}"))?;
    store.set_search_timeout(std::time::Duration::from_secs_f64(args.search_timeout));
    let listener =
        TcpListener::bind(args.listen).await.map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let mut config = Config::for_address(address);
    if let Some(base_url) = &args.base_url {
        config.base_url = base_url.trim_end_matches('/').to_string();
    }
    config.limits.max_bytes = args.max_body_bytes;
    config.large_bodies = rex_server::LargeBodies::new(args.large_body_bytes, args.large_bodies);
    config.limits.max_depth = args.max_json_depth;
    config.delivery_targets = rex_server::outbound::DeliveryTargets::allowing(&args.delivery_allow_hosts);
    if let (Some(relay), Some(from)) = (&args.smtp_relay, &args.smtp_from) {
        // The password only from the environment: command lines are visible to every local user.
        let password = std::env::var("REX_SMTP_PASSWORD").unwrap_or_default();
        let credentials = args.smtp_user.clone().map(|user| (user, password));
        let settings = rex_server::alerts::SmtpSettings {
            relay: relay.clone(),
            from: from.clone(),
            tls: args.smtp_tls,
            credentials,
        };
        config.mailer = Some(rex_server::alerts::Mailer::new(&settings)?);
    }

    if !args.video_link_template.starts_with("https://") {
        return Err(format!("--video-link-template must be an https:// URL, not {:?}", args.video_link_template));
    }
    config.video_link_template = args.video_link_template.clone();
    config.unknown_profiles = args.unknown_profiles;
    config.signer = Arc::new(match &args.token_key {
        Some(key) => rex_auth::TokenSigner::from_pem_file(key, &config.base_url)?,
        None => rex_auth::TokenSigner::generate(&config.base_url)?,
    });
    let security = match &args.security {
        Some(path) => Some(load_security(&args, path, &config, &store)?),
        None => {
            tracing::warn!(
                "DEVELOPMENT MODE: no authentication; anyone on this machine can read and write every resource"
            );
            None
        }
    };
    let mut partner_profiles = PartnerProfiles::load(&args.profiles)?;
    for partner in security.iter().flat_map(|security| security.partners().iter()) {
        partner_profiles.add_configured(&partner.id, &partner.profiles, &validator)?;
    }
    let mtls = match (&args.mtls_listen, &args.tls_cert, &args.tls_key, &args.client_ca) {
        (Some(addr), Some(cert), Some(key), Some(ca)) => {
            let acceptor = rex_auth::MtlsAcceptor::from_files(cert, key, ca).map_err(|e| e.to_string())?;
            let tcp = TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            Some(rex_server::mtls::MtlsListener::new(tcp, acceptor).map_err(|e| e.to_string())?)
        }
        _ => None,
    };
    let state = AppState::start(store.clone(), config, routing, validator, partner_profiles, security).await?;
    if args.demo {
        let loaded = rex_server::load_demo_data(&state, &args.demo_dir).await?;
        tracing::info!(bundles = loaded, "demo data loaded");
    }
    let seconds = std::time::Duration::from_secs;
    let delivery_tls = rex_server::notifications::DeliveryTls {
        client_identity: args.delivery_client_cert.clone().zip(args.delivery_client_key.clone()),
        extra_roots: args.delivery_ca.clone(),
    };
    let client = rex_server::notifications::delivery_client(&delivery_tls, &state.config.delivery_targets)?;
    let retention = rex_server::retention::Retention::from_days(
        args.retain_submissions_days,
        args.retain_audit_days,
        args.retain_dead_notifications_days,
    );
    let config = rex_server::RunConfig {
        ui: match args.no_ui {
            true => None,
            false => Some(rex_web::routes(rex_server::router(state.clone()), web_options(&args, &state)?)),
        },
        escalation_every: (args.escalation_interval > 0).then(|| seconds(args.escalation_interval)),
        retention: (args.retention_interval > 0).then(|| (retention, seconds(args.retention_interval))),
        reminders: (args.consult_reminder > 0)
            .then(|| (seconds(args.consult_reminder_interval), seconds(args.consult_reminder * 60))),
        delivery: (args.delivery_interval > 0).then(|| rex_server::Delivery {
            client,
            every: seconds(args.delivery_interval),
            lease: seconds(args.delivery_lease),
        }),
        refresh_statistics: true,
        shutdown_timeout: seconds(args.shutdown_timeout),
    };
    tracing::info!(%address, base_url = %state.config.base_url, backend = ?store.backend(), "rex is serving FHIR");
    rex_server::run(state, config, rex_server::Listeners { plain: listener, mtls }, signal).await?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The web UI's settings: the development login with `--dev`, else the staff identity provider.
fn web_options(args: &ServeArgs, state: &AppState) -> Result<rex_web::WebOptions, String> {
    let oidc = state.security.as_ref().and_then(|security| security.oidc()).cloned();
    let sign_in = match &args.oidc_client_id {
        Some(_) if oidc.is_none() => return Err("--oidc-client-id needs [oidc] in the --security file".into()),
        Some(client_id) => Some(rex_web::OidcClient {
            client_id: client_id.clone(),
            // The secret only from the environment: command lines are visible to every local user.
            client_secret: std::env::var("REX_OIDC_CLIENT_SECRET").ok().filter(|secret| !secret.is_empty()),
            redirect_url: args
                .oidc_redirect_url
                .clone()
                .unwrap_or_else(|| format!("{}/ui/callback", origin(&state.config.base_url))),
            scopes: args.oidc_scopes.clone(),
        }),
        None => None,
    };
    let secure_cookies = state.config.base_url.starts_with("https://");
    Ok(rex_web::WebOptions { dev_login: args.dev, oidc, secure_cookies, sign_in })
}

/// The partners, the identity provider and rex's token signer, from the command line.
fn load_security(args: &ServeArgs, path: &std::path::Path, server: &Config, store: &Store) -> Result<Security, String> {
    let config = rex_auth::AuthConfig::load(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let token_url = args.token_url.clone().unwrap_or_else(|| default_token_url(&server.base_url));
    Security::new(config, server.signer.clone(), token_url, store.clone())
}

/// `https://host/fhir` → `https://host/auth/token`.
fn default_token_url(base_url: &str) -> String {
    format!("{}/auth/token", origin(base_url))
}

/// `https://host/fhir` → `https://host`.
fn origin(base_url: &str) -> &str {
    let origin_end = base_url
        .find("://")
        .map(|scheme| scheme + 3)
        .and_then(|start| base_url[start..].find('/').map(|slash| start + slash));
    origin_end.map_or(base_url, |end| &base_url[..end])
}

/// `rex token`: a staff token as the configured identity provider would issue it.
fn token(args: TokenArgs) -> Result<(), String> {
    let config = rex_auth::AuthConfig::load(&args.security).map_err(|e| format!("{}: {e}", args.security.display()))?;
    let oidc = config.oidc.ok_or_else(|| format!("{} has no [oidc] section", args.security.display()))?;
    let key = rex_auth::SigningKey::from_pem_file(&args.key)?;
    let role = match args.role.as_str() {
        "specialist" => rex_auth::StaffRole::Specialist,
        "coordinator" => rex_auth::StaffRole::Coordinator,
        _ => rex_auth::StaffRole::Admin,
    };
    if role == rex_auth::StaffRole::Specialist && args.practitioner_role.is_none() {
        return Err("a specialist needs --practitioner-role PractitionerRole/<id>".into());
    }
    let spec = rex_auth::StaffTokenSpec {
        subject: args.subject,
        role,
        practitioner_role: args.practitioner_role,
        queues: args.queues,
        lifetime_seconds: args.lifetime,
    };
    let token = rex_auth::mint_staff_token(&key, &oidc, &spec, chrono::Utc::now().timestamp())?;
    // The key must be one the server accepts, or the token is useless: say so now.
    rex_auth::principal::verify_staff_token(&token, &oidc, chrono::Utc::now().timestamp())
        .map_err(|e| format!("the server would refuse this token ({e}): is the key's public JWKS the [oidc] jwks?"))?;
    println!("{token}");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is called, so a signal
/// that arrives while rex is still starting is not lost (nor fatal).
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, String> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
        let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => {},
                _ = interrupt.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// `rex keys jwks KEY.pem`.
fn keys(args: KeysArgs) -> Result<(), String> {
    let KeysCommand::Jwks { key } = args.command;
    let jwks = rex_auth::SigningKey::from_pem_file(&key)?.public_jwks();
    println!("{}", serde_json::to_string_pretty(&jwks).map_err(|e| e.to_string())?);
    Ok(())
}

/// `rex validate`: the same validator and output as `$validate`.
fn validate(args: ValidateArgs) -> ExitCode {
    let packages: Vec<&std::path::Path> = args.packages.iter().map(PathBuf::as_path).collect();
    let loaded = match &args.profiles {
        Some(folder) => load_validator(folder, &packages),
        None => load_validator_from(EMBEDDED_PROFILES, &packages),
    };
    let validator = match loaded {
        Ok(validator) => validator,
        Err(message) => {
            eprintln!("rex: {message}");
            return ExitCode::from(2);
        }
    };
    let profiles: Vec<&str> = args.profile.iter().map(String::as_str).collect();
    let mut outcomes = Vec::new();
    let mut any_errors = false;
    for file in &args.files {
        let parsed = std::fs::read(file).map_err(|e| e.to_string()).and_then(|bytes| {
            rex_fhir::xml::parse_file(&bytes, usize::MAX).map_err(|issues| report::parse_issues(&issues))
        });
        let resource = match parsed {
            Ok(resource) => resource,
            Err(message) => {
                eprintln!("rex: cannot read {}: {message}", file.display());
                return ExitCode::from(2);
            }
        };
        let issues = validator.validate_with(&resource, &profiles, args.unknown_profiles);
        let errors = issues.iter().filter(|i| i.is_error()).count();
        any_errors |= errors > 0;
        let outcome = rex_fhir::outcome::operation_outcome(&issues);
        if args.summary {
            let warnings = issues.iter().filter(|i| i.severity == rex_fhir::Severity::Warning).count();
            let verdict = if errors > 0 { "INVALID" } else { "valid" };
            report::print_file(verdict, file, &format!("{errors} errors, {warnings} warnings"), Some(&outcome));
        }
        outcomes.push(outcome);
    }
    if !args.summary {
        let output = match outcomes.as_slice() {
            [one] => one.clone(),
            _ => serde_json::json!({"resourceType": "Bundle", "type": "collection",
                "entry": outcomes.iter().map(|o| serde_json::json!({"resource": o})).collect::<Vec<_>>()}),
        };
        println!("{}", serde_json::to_string_pretty(&output).unwrap_or_default());
    }
    if any_errors { ExitCode::from(1) } else { ExitCode::SUCCESS }
}
