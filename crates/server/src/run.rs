//! Running a rex server: its listeners, its background workers and its orderly shutdown. `rex serve`
//! and the end-to-end tests both start rex through [`run`], so the tests run what production runs.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use rex_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::AppState;
use crate::mtls::MtlsListener;
use crate::retention::Retention;

/// Where rex listens.
pub struct Listeners {
    /// The FHIR API, and the staff worklist when [`RunConfig::ui`] is given.
    pub plain: TcpListener,
    /// Partners over mutual TLS: the FHIR API only.
    pub mtls: Option<MtlsListener>,
}

/// The partner notification delivery worker.
pub struct Delivery {
    pub client: reqwest::Client,
    /// Time between two runs.
    pub every: Duration,
    /// How long a delivering instance holds a notification before another may take it.
    pub lease: Duration,
}

/// What runs besides the listeners, and how long shutdown waits. [`RunConfig::default`] runs no
/// background worker (tests drive them directly) and gives in-flight requests 30 seconds.
pub struct RunConfig {
    /// Routes served beside the API on the plain listener (the web UI of `rex-web`).
    pub ui: Option<Router>,
    /// Time between two runs of the SLA escalation and of the consent check.
    pub escalation_every: Option<Duration>,
    /// What the retention purge deletes, and the time between two runs.
    pub retention: Option<(Retention, Duration)>,
    /// Time between two runs of the consult reminders, and how long before a consult they go out.
    pub reminders: Option<(Duration, Duration)>,
    pub delivery: Option<Delivery>,
    /// Refresh the query planner's statistics hourly (see [`Store::refresh_statistics`]).
    pub refresh_statistics: bool,
    /// How long in-flight requests may run after the shutdown signal.
    pub shutdown_timeout: Duration,
}

impl Default for RunConfig {
    fn default() -> RunConfig {
        RunConfig {
            ui: None,
            escalation_every: None,
            retention: None,
            reminders: None,
            delivery: None,
            refresh_statistics: false,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `state` on `listeners` with the workers of `config` until `shutdown` resolves; then
/// stops accepting connections, gives in-flight requests the shutdown timeout, lets the delivery
/// worker release what it leased and flushes the audit journal. The caller closes the store.
pub async fn run(
    state: AppState,
    config: RunConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    // The periodic workers, stopped once the listeners have: the caller closes the store next,
    // and a round started then would only fail on it.
    let mut workers = Vec::new();
    if config.refresh_statistics {
        workers.push(spawn_statistics_refresh(state.store.clone()));
    }
    if let Some(every) = config.escalation_every {
        workers.push(crate::interactions::escalation::spawn_worker(state.clone(), every));
        workers.push(crate::interactions::consent::spawn_worker(state.clone(), every));
    }
    if let Some((retention, every)) = config.retention {
        workers.push(crate::retention::spawn_worker(state.clone(), retention, every));
    }
    if let Some((every, lead)) = config.reminders {
        workers.push(crate::interactions::reminders::spawn_worker(state.clone(), every, lead));
    }
    // One signal stops every listener and the delivery worker; in-flight requests then get the
    // shutdown timeout to finish.
    let (stop, stopping) = watch::channel(false);
    let delivery = config.delivery.map(|delivery| {
        let (client, every, lease) = (delivery.client, delivery.every, delivery.lease);
        crate::notifications::spawn_worker(state.clone(), client, every, lease, stopping.clone())
    });
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections; finishing in-flight requests");
        let _ = stop.send(true);
    });
    let stopped = |mut stopping: watch::Receiver<bool>| async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    // The plain listener also serves the staff worklist under /ui; the mTLS one is for partners.
    let api = crate::router(state.clone());
    let app = match config.ui {
        Some(ui) => api.merge(ui),
        None => api,
    };
    let plain = axum::serve(listeners.plain, app).with_graceful_shutdown(stopped(stopping.clone())).into_future();
    let servers = async {
        match listeners.mtls {
            Some(listener) => {
                let address = axum::serve::Listener::local_addr(&listener).ok();
                tracing::info!(?address, "rex is serving partners over mutual TLS");
                let secure = crate::mtls::serve(listener, crate::router(state.clone()), stopped(stopping.clone()));
                tokio::try_join!(plain, secure).map(|_| ())
            }
            None => plain.await,
        }
    };
    let deadline = async {
        stopped(stopping.clone()).await;
        tokio::time::sleep(config.shutdown_timeout).await;
    };
    tokio::select! {
        served = servers => served.map_err(|e| e.to_string())?,
        () = deadline => tracing::warn!(
            seconds = config.shutdown_timeout.as_secs(),
            "requests still running at the shutdown deadline were abandoned; their transactions roll back"
        ),
    }
    // A round stopped half-way rolls back; the next start or another instance does it again.
    // Waiting for each aborted task matters: one running on another thread at the abort finishes
    // its current step first, which must not be after the caller has closed the store.
    for worker in workers {
        worker.abort();
        let _ = worker.await;
    }
    // The worker finishes the POST it is making and releases the notifications it leased and has
    // not posted, so another instance takes them now rather than after the lease.
    if let Some(delivery) = delivery {
        let _ = delivery.await;
    }
    state.audit.flush().await;
    Ok(())
}

/// Keeps the query planner's statistics fresh as the data grows (hourly; see
/// [`Store::refresh_statistics`]).
fn spawn_statistics_refresh(store: Store) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        every.tick().await;
        loop {
            every.tick().await;
            if let Err(err) = store.refresh_statistics().await {
                tracing::warn!(error = %err, "refreshing the query planner's statistics failed");
            }
        }
    })
}
