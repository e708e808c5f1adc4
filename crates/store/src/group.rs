//! Group commit on SQLite.
//!
//! SQLite has one writer at a time, and each commit in WAL mode with `synchronous=FULL` ends with
//! an fsync of the log and writes every page the transaction changed. One commit per write
//! transaction therefore caps intake at the disk's fsync rate, and pages that consecutive
//! transactions both change (index leaves, the table ends) are written again and again.
//!
//! So every write transaction runs on one dedicated connection, in turn, as a savepoint inside a
//! shared database transaction, the group. A transaction that fails rolls back to its savepoint
//! and leaves the others untouched. One that succeeds releases its savepoint and waits: when no
//! other transaction is coming to the writer (begun and not yet run, or waiting for the writer),
//! or the group is large or old, the group commits
//! and every member learns the outcome together. No member returns from [`GroupMember::commit`]
//! before the group's COMMIT, so nothing is acknowledged before it is durable, and if that COMMIT
//! fails every member fails. A member reads what earlier members of its group wrote; since they
//! commit or fail together, that is never visible to anyone if it is not durable.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, ConnectOptions};
use tokio::sync::{Mutex, OwnedMutexGuard, oneshot};

use crate::StoreError;

/// A group commits once it has this many members, even if more transactions are coming, so that
/// the first member's wait stays bounded under constant load.
const MAX_MEMBERS: usize = 64;
/// ... or once its first member started this long ago.
const MAX_AGE: Duration = Duration::from_millis(25);
/// Page cache of the writer connection (negative: KiB). The writer touches the same index pages
/// over and over; the default 2 MB made it re-read them from the OS on every transaction.
const WRITER_CACHE_KIB: i64 = 16 * 1024;
/// Log pages after which a commit checkpoints (see [`Writer::open`]).
const CHECKPOINT_PAGES: i64 = 16_384;

/// The SQLite writer: its connection and how many transactions are coming to it.
pub(crate) struct Writer {
    state: Arc<Mutex<WriterState>>,
    coming: AtomicUsize,
}

struct WriterState {
    conn: AnyConnection,
    group: Option<Group>,
}

/// The open database transaction shared by several write transactions.
struct Group {
    started: Instant,
    /// Members that released their savepoint and wait for the COMMIT.
    waiting: Vec<oneshot::Sender<Result<(), String>>>,
}

/// One write transaction of a group: it holds the writer connection until it commits or is dropped.
pub(crate) struct GroupMember {
    writer: Arc<Writer>,
    /// `None` once the member has finished.
    guard: Option<OwnedMutexGuard<WriterState>>,
}

impl Writer {
    pub(crate) async fn open(options: &AnyConnectOptions) -> Result<Writer, StoreError> {
        let mut conn = options.connect().await?;
        sqlx::query(&format!("PRAGMA cache_size = -{WRITER_CACHE_KIB}")).execute(&mut conn).await?;
        // FULL: each commit fsyncs the log, so a commit survives an OS crash or power cut, not only
        // a crash of rex. It is SQLite's default; set here so that it is explicit.
        sqlx::query("PRAGMA synchronous = FULL").execute(&mut conn).await?;
        // A checkpoint copies every page changed since the last one from the log into the database
        // file and fsyncs it. At SQLite's default (every 1,000 pages, 4 MB) intake checkpointed
        // every few Bundles and wrote the same hot pages (the ends of tables and indexes) again
        // each time. Every 16,384 pages (64 MB of log) those pages are copied once for many
        // Bundles. Durability does not change: a commit is durable once the log is fsynced.
        sqlx::query(&format!("PRAGMA wal_autocheckpoint = {CHECKPOINT_PAGES}")).execute(&mut conn).await?;
        // Each member is a savepoint, so SQLite copies every page the group already changed into a
        // sub-journal before the member changes it again, to be able to roll the member back. A
        // Bundle touches hundreds of pages; past 64 KiB the sub-journal spilled to a temporary file,
        // and writing it was about a quarter of the writer thread's CPU. In memory it is a copy. It is only
        // for rolling back a member: commits and durability do not depend on it.
        sqlx::query("PRAGMA temp_store = MEMORY").execute(&mut conn).await?;
        Ok(Writer { state: Arc::new(Mutex::new(WriterState { conn, group: None })), coming: AtomicUsize::new(0) })
    }

    /// Counts a transaction as coming to the writer until the returned guard is dropped.
    pub(crate) fn coming(self: &Arc<Self>) -> Coming {
        self.coming.fetch_add(1, Ordering::SeqCst);
        Coming { writer: self.clone(), arrived: false }
    }

    /// Waits for the writer connection and starts a member transaction on it. The transaction
    /// counts as coming (`coming`) until it holds the writer.
    pub(crate) async fn join(self: &Arc<Self>, coming: Option<Coming>) -> Result<GroupMember, StoreError> {
        let coming = coming.unwrap_or_else(|| self.coming());
        let guard = self.state.clone().lock_owned().await;
        coming.arrived();
        // From here on the statements run on a task of their own, so that a caller that goes away
        // (a client hanging up) cannot leave the connection half-way through them.
        let started = tokio::spawn(start_member(guard)).await;
        let guard = started.map_err(|_| StoreError::GroupCommit("starting a transaction was aborted".into()))??;
        Ok(GroupMember { writer: self.clone(), guard: Some(guard) })
    }

    /// Whether the group should commit now rather than wait for the transactions coming behind.
    fn should_commit(&self, group: &Group) -> bool {
        self.coming.load(Ordering::SeqCst) == 0
            || group.waiting.len() >= MAX_MEMBERS
            || group.started.elapsed() >= MAX_AGE
    }
}

/// A transaction that has begun and not yet taken the writer: the open group waits for it, so
/// that it commits with the group rather than alone after it.
pub(crate) struct Coming {
    writer: Arc<Writer>,
    /// Whether the transaction took the writer (else it ended without a statement).
    arrived: bool,
}

impl Coming {
    /// The transaction holds the writer: it settles the group itself when it finishes.
    fn arrived(mut self) {
        self.arrived = true;
    }
}

impl Drop for Coming {
    /// A transaction that ends without a statement (its work failed first, it had nothing to
    /// write, or its caller went away) may be the last one the open group waits for: the group is
    /// then settled at once rather than after a waiting member's timeout.
    fn drop(&mut self) {
        let was_last = self.writer.coming.fetch_sub(1, Ordering::SeqCst) == 1;
        if self.arrived || !was_last {
            return;
        }
        let writer = self.writer.clone();
        tokio::spawn(async move {
            let mut guard = writer.state.clone().lock_owned().await;
            settle(&writer, &mut guard).await;
        });
    }
}

/// Opens the group transaction if there is none, and the member's savepoint.
async fn start_member(mut guard: OwnedMutexGuard<WriterState>) -> Result<OwnedMutexGuard<WriterState>, StoreError> {
    if guard.group.is_none() {
        // IMMEDIATE takes the database's write lock up front, so a member never fails half-way for
        // want of it.
        sqlx::query("BEGIN IMMEDIATE").execute(&mut guard.conn).await?;
        guard.group = Some(Group { started: Instant::now(), waiting: Vec::new() });
    }
    if let Err(err) = sqlx::query("SAVEPOINT rex_tx").execute(&mut guard.conn).await {
        fail_group(&mut guard, "the group transaction could not start a savepoint").await;
        return Err(err.into());
    }
    Ok(guard)
}

impl GroupMember {
    pub(crate) fn conn(&mut self) -> &mut AnyConnection {
        &mut self.guard.as_mut().expect("a member holds the writer until it finishes").conn
    }

    /// Keeps this member's writes in the group and waits until the group has committed.
    pub(crate) async fn commit(mut self) -> Result<(), StoreError> {
        let guard = self.guard.take().expect("a member holds the writer until it finishes");
        let (done, mut outcome) = oneshot::channel();
        let writer = self.writer.clone();
        tokio::spawn(async move {
            let mut guard = guard;
            if sqlx::query("RELEASE SAVEPOINT rex_tx").execute(&mut guard.conn).await.is_err() {
                // The savepoint is gone only if SQLite rolled the whole transaction back.
                let _ = done.send(Err("the group transaction was rolled back".to_string()));
                fail_group(&mut guard, "the group transaction was rolled back").await;
                return;
            }
            let group = guard.group.as_mut().expect("a member runs inside a group");
            group.waiting.push(done);
            settle(&writer, &mut guard).await;
        });
        loop {
            match tokio::time::timeout(MAX_AGE * 2, &mut outcome).await {
                Ok(Ok(Ok(()))) => return Ok(()),
                Ok(Ok(Err(message))) => return Err(StoreError::GroupCommit(message)),
                Ok(Err(_)) => return Err(StoreError::GroupCommit("the group ended without an outcome".into())),
                Err(_) => {
                    // The transactions this group waited for went away (their clients hung up)
                    // before finishing it. Holding the writer means no member is running, so the
                    // group can commit now.
                    let mut guard = self.writer.state.clone().lock_owned().await;
                    if guard.group.as_ref().is_some_and(|group| !group.waiting.is_empty()) {
                        tokio::spawn(async move { commit_group(&mut guard).await });
                    }
                }
            }
        }
    }
}

impl Drop for GroupMember {
    /// A member dropped without commit (its work failed) undoes its writes. That needs the
    /// database, so it runs on a task that keeps the writer until it is done.
    fn drop(&mut self) {
        let Some(mut guard) = self.guard.take() else { return };
        let writer = self.writer.clone();
        tokio::spawn(async move {
            let undone = async {
                // A member dropped during a search (its request went away) leaves the statement
                // deadline set (`Tx::search`); this waits for that statement and lifts it.
                sqlx::query("SELECT rex_deadline(0)").execute(&mut guard.conn).await?;
                sqlx::query("ROLLBACK TO SAVEPOINT rex_tx").execute(&mut guard.conn).await?;
                sqlx::query("RELEASE SAVEPOINT rex_tx").execute(&mut guard.conn).await
            };
            if undone.await.is_err() {
                fail_group(&mut guard, "the group transaction was rolled back").await;
                return;
            }
            settle(&writer, &mut guard).await;
        });
    }
}

/// Run by whoever holds the writer when a member finishes or a transaction stops coming: commits
/// the open group when it should (see [`Writer::should_commit`]), and ends a group with nothing to
/// keep unless a transaction coming will carry it on.
async fn settle(writer: &Writer, state: &mut WriterState) {
    let Some(group) = &state.group else { return };
    if group.waiting.is_empty() {
        if writer.coming.load(Ordering::SeqCst) == 0 {
            let _ = sqlx::query("ROLLBACK").execute(&mut state.conn).await;
            state.group = None;
        }
    } else if writer.should_commit(group) {
        commit_group(state).await;
    }
}

/// Commits the group and tells every waiting member the outcome.
async fn commit_group(state: &mut WriterState) {
    let outcome = sqlx::query("COMMIT").execute(&mut state.conn).await;
    let outcome = match outcome {
        Ok(_) => Ok(()),
        Err(err) => {
            tracing::error!(error = %err, "group commit failed");
            // A failed COMMIT may leave the transaction open; end it so the next group starts clean.
            let _ = sqlx::query("ROLLBACK").execute(&mut state.conn).await;
            Err("the group commit failed".to_string())
        }
    };
    let members = state.group.take().map(|group| group.waiting).unwrap_or_default();
    tracing::trace!(members = members.len(), "group commit");
    for member in members {
        let _ = member.send(outcome.clone());
    }
}

/// Ends a group whose transaction is lost: its waiting members fail, nothing of it is kept.
async fn fail_group(state: &mut WriterState, message: &str) {
    tracing::error!(message, "group transaction failed");
    let _ = sqlx::query("ROLLBACK").execute(&mut state.conn).await;
    for member in state.group.take().map(|group| group.waiting).unwrap_or_default() {
        let _ = member.send(Err(message.to_string()));
    }
}
