//! sqlx logs every statement (at debug) and every slow one (at warn, past a second) under the
//! target `sqlx::query`, with the statement's whole SQL text in the field `db.statement`. rex binds
//! values as parameters, but a Bundle's rows are written with multi-row INSERTs whose text grows
//! with the Bundle, and one slow-statement warning was 10 MB. [`Statements`] takes sqlx's statement
//! events in place of the log output, keeps the statement cut to [`MAX_STATEMENT_CHARS`] (with its
//! length, the time it took and its row counts), and [`spawn_logger`] logs them again under the
//! target `rex::sql` at the same level. The logging happens on a thread of its own because an
//! event logged while another is being logged is dropped (tracing does not re-enter a subscriber).

use std::fmt::Debug;
use std::sync::mpsc::{Receiver, Sender, channel};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The target of sqlx's statement events.
pub const SQLX_TARGET: &str = "sqlx::query";
/// The longest statement text a log line carries.
pub const MAX_STATEMENT_CHARS: usize = 300;

/// Takes sqlx's statement events; the log output must not take [`SQLX_TARGET`] itself
/// (`sqlx::query=off` on its filter).
pub struct Statements {
    taken: Sender<StatementFields>,
}

impl Statements {
    /// The layer, and the statements it takes for [`spawn_logger`].
    pub fn new() -> (Statements, Receiver<StatementFields>) {
        let (taken, statements) = channel();
        (Statements { taken }, statements)
    }
}

impl<S: Subscriber> Layer<S> for Statements {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        if event.metadata().target() != SQLX_TARGET {
            return;
        }
        let mut fields = StatementFields { level: Some(*event.metadata().level()), ..StatementFields::default() };
        event.record(&mut fields);
        // The logger thread only ends with the process.
        let _ = self.taken.send(fields);
    }
}

/// Logs the statements [`Statements`] takes, each at its sqlx level, on a thread of its own.
pub fn spawn_logger(statements: Receiver<StatementFields>) -> std::io::Result<()> {
    std::thread::Builder::new().name("rex-sql-log".into()).spawn(move || {
        for statement in statements {
            statement.log();
        }
    })?;
    Ok(())
}

/// What rex keeps of a sqlx statement event.
#[derive(Debug, Default)]
pub struct StatementFields {
    level: Option<Level>,
    message: String,
    /// The statement (or sqlx's summary of it, its first words, when it gives no text), cut short.
    statement: String,
    /// The statement's full length in characters.
    length: usize,
    elapsed_secs: f64,
    rows_affected: u64,
    rows_returned: u64,
}

impl StatementFields {
    fn log(self) {
        let StatementFields { level, message, statement, length, elapsed_secs, rows_affected, rows_returned } = self;
        let message = if message.is_empty() { "statement".to_string() } else { message };
        macro_rules! log {
            ($macro:ident) => {
                tracing::$macro!(target: "rex::sql", statement, statement_chars = length, elapsed_secs,
                                 rows_affected, rows_returned, "{message}")
            };
        }
        match level.unwrap_or(Level::DEBUG) {
            Level::ERROR => log!(error),
            Level::WARN => log!(warn),
            Level::INFO => log!(info),
            Level::DEBUG => log!(debug),
            Level::TRACE => log!(trace),
        }
    }

    fn keep_statement(&mut self, text: &str) {
        let text = text.trim();
        // sqlx gives the summary, and the whole text only when it is longer than the summary.
        if text.is_empty() || text.chars().count() <= self.length {
            return;
        }
        self.length = text.chars().count();
        self.statement = match text.char_indices().nth(MAX_STATEMENT_CHARS) {
            Some((cut, _)) => format!("{} …", &text[..cut]),
            None => text.to_string(),
        };
    }
}

impl Visit for StatementFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" | "db.statement" => self.keep_statement(value),
            "message" => self.message = value.to_string(),
            _ => {}
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = value;
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "rows_affected" => self.rows_affected = value,
            "rows_returned" => self.rows_returned = value,
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        // Strings come through record_str; of the rest only the message is kept.
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// A slow-statement event as sqlx 0.8 emits it (`sqlx_core::logger::QueryLogger::finish`).
    fn sqlx_slow_statement(sql: &str) {
        let summary = sql.split_whitespace().take(4).collect::<Vec<_>>().join(" ") + " …";
        tracing::warn!(target: "sqlx::query", summary, db.statement = format!("\n\n{sql}\n"), rows_affected = 3u64,
                       rows_returned = 0u64, elapsed = ?std::time::Duration::from_secs(2), elapsed_secs = 2.0,
                       slow_threshold = ?std::time::Duration::from_secs(1),
                       "slow statement: execution time exceeded alert threshold");
    }

    /// What the log output writes when sqlx reports `sql` as slow, in JSON or text.
    fn logged(json: bool, sql: &str) -> String {
        #[derive(Clone, Default)]
        struct Captured(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let output = tracing_subscriber::fmt::layer().with_writer(move || writer.clone()).with_ansi(false);
        let output: Box<dyn Layer<_> + Send + Sync> = if json { Box::new(output.json()) } else { Box::new(output) };
        let filter = EnvFilter::new("info,sqlx=warn").add_directive(format!("{SQLX_TARGET}=off").parse().unwrap());
        let (statements, taken) = Statements::new();
        let subscriber = tracing_subscriber::registry()
            .with(output.with_filter(filter))
            .with(statements.with_filter(EnvFilter::new("info,sqlx=warn")));
        let dispatch = tracing::Dispatch::new(subscriber);
        tracing::dispatcher::with_default(&dispatch, || sqlx_slow_statement(sql));
        // What the logger thread does, here on this thread.
        tracing::dispatcher::with_default(&dispatch, || taken.try_iter().for_each(StatementFields::log));
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn slow_statements_are_logged_with_their_text_cut_short() {
        let values = vec!["($1, $2, $3, $4)"; 600_000].join(", ");
        let sql = format!("INSERT INTO resources (type, id, version, content) VALUES {values}");
        assert!(sql.len() > 10_000_000);
        for json in [false, true] {
            let line = logged(json, &sql);
            assert!(
                line.len() < 2 * MAX_STATEMENT_CHARS + 500,
                "{} bytes logged: {}",
                line.len(),
                &line[..500.min(line.len())]
            );
            assert!(line.contains("slow statement") && line.contains("INSERT INTO resources"), "{line}");
            assert!(line.contains(&sql.chars().count().to_string()), "the full length is given: {line}");
        }
        let short = logged(false, "SELECT content FROM resources WHERE id = $1");
        assert!(short.contains("SELECT content FROM resources WHERE id = $1"), "{short}");
    }
}
