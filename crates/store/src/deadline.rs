//! Deadlines for SQLite statements: a statement still running past its connection's deadline is
//! interrupted (`SQLITE_INTERRUPT`), as PostgreSQL's `statement_timeout` cancels one.
//!
//! sqlx's `Any` driver gives no access to the SQLite handle of a connection, so rex registers, for
//! every SQLite connection the process opens (`sqlite3_auto_extension`), a progress handler that
//! checks the connection's deadline every few thousand virtual-machine steps, and the SQL function
//! `rex_deadline(micros)` that sets it (0: none) and returns the connection's key in [`REGISTRY`],
//! through which the caller can move the deadline without a statement: to "now" when the request
//! that started the statement goes away.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Once, Weak};

use libsqlite3_sys as ffi;

/// Virtual-machine steps between two looks at the clock: a few microseconds of work, so an
/// interrupt comes well within a millisecond of the deadline, for a clock read per step batch.
const STEPS_PER_CHECK: c_int = 4000;

/// A connection's deadline in microseconds since the Unix epoch; 0 for none.
pub(crate) struct Deadline {
    at: AtomicI64,
    key: i64,
}

impl Deadline {
    /// Interrupts the statement running now, if any (at its next check), and any the connection
    /// runs later: for a connection that is then closed.
    pub(crate) fn expire(&self) {
        self.at.store(1, Ordering::Relaxed);
    }

    /// Interrupts the statements that run past `micros` (since the Unix epoch).
    pub(crate) fn set(&self, micros: i64) {
        self.at.store(micros.max(1), Ordering::Relaxed);
    }

    /// Lifts the deadline.
    pub(crate) fn clear(&self) {
        self.at.store(0, Ordering::Relaxed);
    }
}

/// The deadlines of open connections by key. A connection holds its own [`Deadline`] (freed when
/// SQLite drops the function at close); this map only lets a caller find it.
static REGISTRY: Mutex<Option<HashMap<i64, Weak<Deadline>>>> = Mutex::new(None);
static NEXT_KEY: AtomicI64 = AtomicI64::new(1);

/// Registers the progress handler and `rex_deadline` for every SQLite connection opened after
/// this call. Idempotent.
pub(crate) fn install() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // SAFETY: `register` has the signature SQLite calls auto-extensions with.
        let code = unsafe { ffi::sqlite3_auto_extension(Some(register)) };
        if code != ffi::SQLITE_OK {
            tracing::error!(code, "cannot register the SQLite statement deadline; searches run unbounded");
        }
    });
}

/// The deadline of the connection whose `rex_deadline` returned `key`.
pub(crate) fn find(key: i64) -> Option<Arc<Deadline>> {
    REGISTRY.lock().ok()?.as_ref()?.get(&key)?.upgrade()
}

unsafe extern "C" fn register(
    db: *mut ffi::sqlite3,
    _error: *mut *mut c_char,
    _api: *const ffi::sqlite3_api_routines,
) -> c_int {
    let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
    let deadline = Arc::new(Deadline { at: AtomicI64::new(0), key });
    if let Ok(mut registry) = REGISTRY.lock() {
        registry.get_or_insert_with(HashMap::new).insert(key, Arc::downgrade(&deadline));
    }
    let data = Arc::into_raw(deadline) as *mut c_void;
    // SAFETY: `db` is the connection being opened; `data` stays valid until `release`, which SQLite
    // calls when the function is dropped at close, after the last progress callback.
    unsafe {
        let code = ffi::sqlite3_create_function_v2(
            db,
            c"rex_deadline".as_ptr(),
            1,
            ffi::SQLITE_UTF8 | ffi::SQLITE_DIRECTONLY,
            data,
            Some(set_deadline),
            None,
            None,
            Some(release),
        );
        if code != ffi::SQLITE_OK {
            return code;
        }
        ffi::sqlite3_progress_handler(db, STEPS_PER_CHECK, Some(check), data);
    }
    ffi::SQLITE_OK
}

/// `rex_deadline(micros)`: sets the deadline and returns the connection's key.
unsafe extern "C" fn set_deadline(
    context: *mut ffi::sqlite3_context,
    _argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: SQLite passes the function's user data (a live `Deadline`) and its one argument.
    unsafe {
        let deadline = &*(ffi::sqlite3_user_data(context) as *const Deadline);
        deadline.at.store(ffi::sqlite3_value_int64(*argv), Ordering::Relaxed);
        ffi::sqlite3_result_int64(context, deadline.key);
    }
}

/// The progress handler: non-zero interrupts the running statement.
unsafe extern "C" fn check(data: *mut c_void) -> c_int {
    // SAFETY: `data` is the connection's live `Deadline`.
    let deadline = unsafe { &*(data as *const Deadline) };
    let at = deadline.at.load(Ordering::Relaxed);
    c_int::from(at != 0 && crate::now_micros() >= at)
}

unsafe extern "C" fn release(data: *mut c_void) {
    // SAFETY: `data` came from `Arc::into_raw` in `register`; SQLite calls this once.
    let deadline = unsafe { Arc::from_raw(data as *const Deadline) };
    if let Ok(mut registry) = REGISTRY.lock()
        && let Some(registry) = registry.as_mut()
    {
        registry.remove(&deadline.key);
    }
}
