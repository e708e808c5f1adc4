//! Running a parsed [`SearchQuery`] as SQL over the index tables.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rex_fhir::query::{
    Criterion, Include, Match, Prefix, SearchQuery, SortBy, SortKey, StringMode, SystemMatch, Total, UriMode,
};
use rex_fhir::search::{ParamType, SearchRegistry};
use rex_fhir::{Issue, IssueCode};
use rex_i18n::msg;
use sqlx::any::AnyArguments;
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AnyPool, Row};

use crate::deadline::{Deadline, find as find_deadline};
use crate::read::resource_from_row;
use crate::worklist::WorklistFilter;
use crate::{Backend, Store, StoreError, StoredResource, Tx, now_micros};

/// Rounds of `_include:iterate` / `_revinclude:iterate` followed at most.
const MAX_INCLUDE_ROUNDS: usize = 4;

/// What a search found: the page of matches, the resources `_include`d or `_revinclude`d with them,
/// and the total number of matches when asked for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchResult {
    pub total: Option<i64>,
    pub matches: Vec<StoredResource>,
    pub included: Vec<StoredResource>,
}

/// A bind value.
#[derive(Debug, Clone)]
enum Arg {
    Text(String),
    Int(i64),
    Real(f64),
}

/// SQL text with its numbered placeholders' values.
#[derive(Default)]
struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    /// Appends a placeholder bound to `arg`.
    fn arg(&mut self, arg: Arg) {
        self.args.push(arg);
        self.text.push_str(&format!("${}", self.args.len()));
    }

    fn text(&mut self, value: &str) {
        self.arg(Arg::Text(value.to_string()));
    }

    fn query(&self) -> Query<'_, Any, AnyArguments<'_>> {
        let mut query = sqlx::query(&self.text);
        for arg in &self.args {
            query = match arg {
                Arg::Text(text) => query.bind(text.clone()),
                Arg::Int(value) => query.bind(*value),
                Arg::Real(value) => query.bind(*value),
            };
        }
        query
    }
}

fn index_table(param_type: ParamType) -> &'static str {
    match param_type {
        ParamType::String => "idx_string",
        ParamType::Token => "idx_token",
        ParamType::Reference => "idx_reference",
        ParamType::Date => "idx_date",
        ParamType::Number => "idx_number",
        ParamType::Quantity => "idx_quantity",
        _ => "idx_uri",
    }
}

/// Escapes LIKE wildcards in user text (`\` is the escape character).
fn like_escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// `[low, high]` range comparison of an indexed range against the search range, per FHIR's prefixes.
fn range_condition(sql: &mut Sql, low_col: &str, high_col: &str, prefix: Prefix, low: Arg, high: Arg) {
    let (a, b) = (low, high);
    match prefix {
        Prefix::Eq => {
            sql.push(&format!("({low_col} >= "));
            sql.arg(a);
            sql.push(&format!(" AND {high_col} <= "));
            sql.arg(b);
            sql.push(")");
        }
        Prefix::Ne => {
            sql.push(&format!("NOT ({low_col} >= "));
            sql.arg(a);
            sql.push(&format!(" AND {high_col} <= "));
            sql.arg(b);
            sql.push(")");
        }
        Prefix::Gt | Prefix::Sa => {
            sql.push(&format!("{} > ", if prefix == Prefix::Gt { high_col } else { low_col }));
            sql.arg(b);
        }
        Prefix::Lt | Prefix::Eb => {
            sql.push(&format!("{} < ", if prefix == Prefix::Lt { low_col } else { high_col }));
            sql.arg(a);
        }
        Prefix::Ge => {
            sql.push(&format!("{high_col} >= "));
            sql.arg(a);
        }
        Prefix::Le => {
            sql.push(&format!("{low_col} <= "));
            sql.arg(b);
        }
        Prefix::Ap => {
            sql.push(&format!("({low_col} <= "));
            sql.arg(b);
            sql.push(&format!(" AND {high_col} >= "));
            sql.arg(a);
            sql.push(")");
        }
    }
}

/// A number or quantity comparison. The search value carries its precision as [low, high]; `eq`
/// means within that precision, the other prefixes compare with the value itself.
fn number_condition(sql: &mut Sql, column: &str, prefix: Prefix, low: f64, high: f64) {
    let value = (low + high) / 2.0;
    match prefix {
        Prefix::Eq | Prefix::Ne => range_condition(sql, column, column, prefix, Arg::Real(low), Arg::Real(high)),
        Prefix::Ap => {
            let margin = (value * 0.1).abs();
            range_condition(sql, column, column, Prefix::Ap, Arg::Real(value - margin), Arg::Real(value + margin))
        }
        Prefix::Gt | Prefix::Sa => {
            sql.push(&format!("{column} > "));
            sql.arg(Arg::Real(value));
        }
        Prefix::Lt | Prefix::Eb => {
            sql.push(&format!("{column} < "));
            sql.arg(Arg::Real(value));
        }
        Prefix::Ge => {
            sql.push(&format!("{column} >= "));
            sql.arg(Arg::Real(value));
        }
        Prefix::Le => {
            sql.push(&format!("{column} <= "));
            sql.arg(Arg::Real(value));
        }
    }
}

/// The condition one alternative puts on the index row `i`.
fn match_condition(sql: &mut Sql, alternative: &Match) {
    match alternative {
        Match::String { mode: StringMode::Exact, value } => {
            sql.push("i.exact = ");
            sql.text(value);
        }
        Match::String { mode, value } => {
            sql.push("i.normalized LIKE ");
            let pattern = match mode {
                StringMode::Contains => format!("%{}%", like_escape(value)),
                _ => format!("{}%", like_escape(value)),
            };
            sql.text(&pattern);
            sql.push(" ESCAPE '\\'");
        }
        Match::Token { system, code } => {
            let mut parts = 0;
            match system {
                SystemMatch::Any => {}
                SystemMatch::NoSystem => {
                    sql.push("i.system IS NULL");
                    parts += 1;
                }
                SystemMatch::Is(system) => {
                    sql.push("i.system = ");
                    sql.text(system);
                    parts += 1;
                }
            }
            if let Some(code) = code {
                if parts > 0 {
                    sql.push(" AND ");
                }
                sql.push("i.code = ");
                sql.text(code);
                parts += 1;
            }
            if parts == 0 {
                sql.push("1 = 1");
            }
        }
        Match::Reference { target_type, id } => {
            if let Some(target_type) = target_type {
                sql.push("i.target_type = ");
                sql.text(target_type);
                sql.push(" AND ");
            }
            sql.push("i.target_id = ");
            sql.text(id);
        }
        Match::ReferenceUrl(url) => {
            sql.push("i.url = ");
            sql.text(url);
        }
        Match::Date { prefix, low, high } => {
            range_condition(sql, "i.low", "i.high", *prefix, Arg::Int(*low), Arg::Int(*high))
        }
        Match::Number { prefix, low, high } => number_condition(sql, "i.value", *prefix, *low, *high),
        Match::Quantity { prefix, low, high, system, code } => {
            sql.push("(");
            number_condition(sql, "i.value", *prefix, *low, *high);
            sql.push(")");
            if let Some(system) = system {
                sql.push(" AND i.system = ");
                sql.text(system);
            }
            if let Some(code) = code {
                if system.is_some() {
                    sql.push(" AND i.code = ");
                    sql.text(code);
                } else {
                    sql.push(" AND (i.code = ");
                    sql.text(code);
                    sql.push(" OR i.unit = ");
                    sql.text(code);
                    sql.push(")");
                }
            }
        }
        Match::Uri { mode, value } => match mode {
            UriMode::Exact => {
                sql.push("i.value = ");
                sql.text(value);
            }
            UriMode::Below => {
                sql.push("i.value LIKE ");
                sql.text(&format!("{}%", like_escape(value)));
                sql.push(" ESCAPE '\\'");
            }
            UriMode::Above => {
                sql.text(value);
                sql.push(" LIKE (i.value || '%')");
            }
        },
        Match::Id(_) | Match::LastUpdated { .. } | Match::Missing(_) => unreachable!("handled on the resource row"),
    }
}

/// The WHERE clause (after `r.resource_type = ...`) of a query's criteria.
/// How the criteria on index tables are written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Probe {
    /// Every criterion is a correlated EXISTS, checked for each candidate row: best when the rows
    /// come from elsewhere in the wanted order and the scan stops early ([`page_by_date`]).
    Each,
    /// A reference to a known target (`owner=HealthcareService/x`, `subject=Patient/1`) becomes
    /// `r.id IN (...)` on `idx_reference_target`, so the database can start from the few resources
    /// that point there instead of checking every resource of the type (counts, unsorted pages).
    FromTargets,
}

/// The resource types a reference parameter of the query may point to.
fn targets<'a>(registry: &'a SearchRegistry, query: &SearchQuery, criterion: &Criterion) -> &'a [String] {
    registry.param(&query.resource_type, &criterion.param).map_or(&[], |def| def.targets.as_slice())
}

fn push_criteria(sql: &mut Sql, query: &SearchQuery, probe: Probe) {
    let registry = SearchRegistry::r4();
    for criterion in &query.criteria {
        sql.push(" AND (");
        for (index, alternative) in criterion.alternatives.iter().enumerate() {
            if index > 0 {
                sql.push(" OR ");
            }
            match alternative {
                Match::Id(id) => {
                    sql.push("r.id = ");
                    sql.text(id);
                }
                Match::LastUpdated { prefix, low, high } => {
                    range_condition(sql, "r.last_updated", "r.last_updated", *prefix, Arg::Int(*low), Arg::Int(*high))
                }
                Match::Reference { target_type, id }
                    if probe == Probe::FromTargets
                        && !criterion.negated
                        && (target_type.is_some() || !targets(registry, query, criterion).is_empty()) =>
                {
                    sql.push("r.id IN (SELECT i.id FROM idx_reference i WHERE i.resource_type = ");
                    sql.text(&query.resource_type);
                    sql.push(" AND i.param = ");
                    sql.text(&criterion.param);
                    sql.push(" AND (");
                    match target_type {
                        Some(_) => match_condition(sql, alternative),
                        // A bare id (`Observation?patient=123`) with several possible target
                        // types: each is a point of the target index, not a probe of every
                        // resource of the searched type.
                        None => {
                            push_in_list(sql, "i.target_type", targets(registry, query, criterion));
                            sql.push(" AND i.target_id = ");
                            sql.text(id);
                        }
                    }
                    sql.push("))");
                }
                other => {
                    let param_type = registry
                        .param(&query.resource_type, &criterion.param)
                        .map_or(ParamType::Uri, |def| def.param_type);
                    let negate = criterion.negated || matches!(other, Match::Missing(true));
                    sql.push(if negate { "NOT EXISTS (" } else { "EXISTS (" });
                    sql.push(&format!(
                        "SELECT 1 FROM {} i WHERE i.resource_type = r.resource_type AND i.id = r.id AND i.param = ",
                        index_table(param_type)
                    ));
                    sql.text(&criterion.param);
                    if !matches!(other, Match::Missing(_)) {
                        sql.push(" AND (");
                        match_condition(sql, other);
                        sql.push(")");
                    }
                    sql.push(")");
                }
            }
        }
        sql.push(")");
    }
}

fn push_order(sql: &mut Sql, query: &SearchQuery) {
    let mut keys = Vec::new();
    for key in &query.sort {
        let direction = if key.descending { "DESC" } else { "ASC" };
        let expression = match &key.by {
            SortBy::LastUpdated => "r.last_updated".to_string(),
            SortBy::Id => "r.id".to_string(),
            SortBy::Date(param) | SortBy::String(param) => {
                let (table, column) = match (&key.by, key.descending) {
                    (SortBy::Date(_), false) => ("idx_date", "MIN(s.low)"),
                    (SortBy::Date(_), true) => ("idx_date", "MAX(s.high)"),
                    (_, false) => ("idx_string", "MIN(s.normalized)"),
                    (_, true) => ("idx_string", "MAX(s.normalized)"),
                };
                let mut sub = Sql { text: String::new(), args: std::mem::take(&mut sql.args) };
                sub.push(&format!(
                    "(SELECT {column} FROM {table} s WHERE s.resource_type = r.resource_type AND s.id = r.id AND s.param = "
                ));
                sub.text(param);
                sub.push(")");
                sql.args = sub.args;
                sub.text
            }
        };
        // Resources without the value sort last in both directions and on both backends.
        keys.push(format!("({expression} IS NULL) ASC, {expression} {direction}"));
    }
    if query.sort.is_empty() {
        keys.push("r.last_updated DESC".to_string());
    }
    keys.push("r.id ASC".to_string());
    sql.push(&format!(" ORDER BY {}", keys.join(", ")));
}

/// `SELECT {select}` of the resources matching `query`'s criteria (not yet ordered or paged). A
/// Task search by status starts from the Tasks in those statuses ([`WorklistFilter`]).
fn base_sql(select: &str, query: &SearchQuery) -> Sql {
    match WorklistFilter::of(query) {
        Some(filter) => worklist_sql(select, query, &filter),
        None => {
            let mut sql = Sql::default();
            sql.push(&format!("SELECT {select} FROM resources r WHERE r.resource_type = "));
            sql.text(&query.resource_type);
            sql.push(" AND r.deleted = 0");
            push_criteria(&mut sql, query, Probe::FromTargets);
            sql
        }
    }
}

/// `{column} IN ($n, ...)`.
fn push_in_list(sql: &mut Sql, column: &str, values: impl IntoIterator<Item = impl AsRef<str>>) {
    sql.push(&format!("{column} IN ("));
    for (index, value) in values.into_iter().enumerate() {
        if index > 0 {
            sql.push(", ");
        }
        sql.text(value.as_ref());
    }
    sql.push(")");
}

/// `SELECT {select}` of the Tasks matching `query`, read from the `task_worklist` rows (`q`) that
/// `filter` allows.
fn worklist_sql(select: &str, query: &SearchQuery, filter: &WorklistFilter) -> Sql {
    let mut sql = Sql::default();
    sql.push(&format!(
        "SELECT {select} FROM task_worklist q JOIN resources r ON r.resource_type = 'Task' AND r.id = q.id WHERE "
    ));
    push_in_list(&mut sql, "q.status", &filter.statuses);
    if let Some(owners) = &filter.owners {
        sql.push(" AND ");
        push_in_list(&mut sql, "q.owner", owners);
    }
    if let Some(bound) = filter.due_at_most {
        sql.push(" AND q.due <= ");
        sql.arg(Arg::Int(bound));
    }
    sql.push(" AND r.deleted = 0");
    push_criteria(&mut sql, query, Probe::Each);
    sql
}

const COLUMNS: &str = "r.resource_type, r.id, r.version_id, r.last_updated, r.deleted, r.content";

/// The number of matches of `query`.
async fn count(conn: &mut AnyConnection, query: &SearchQuery) -> Result<i64, sqlx::Error> {
    Ok(base_sql("COUNT(*)", query).query().fetch_one(&mut *conn).await?.get::<i64, _>(0))
}

/// Runs a search, with its total when `count_total` (the caller decides for an estimate).
async fn search(
    conn: &mut AnyConnection,
    backend: Backend,
    query: &SearchQuery,
    count_total: bool,
) -> Result<SearchResult, sqlx::Error> {
    let total = match count_total || query.summary_count {
        true => Some(count(conn, query).await?),
        false => None,
    };
    if query.summary_count || query.count == 0 {
        return Ok(SearchResult { total, matches: Vec::new(), included: Vec::new() });
    }
    let matches = match date_order(query) {
        Some(param) => page_by_date(conn, backend, query, param).await?,
        None => {
            let mut sql = base_sql(COLUMNS, query);
            push_order(&mut sql, query);
            sql.push(" LIMIT ");
            sql.arg(Arg::Int(query.count as i64));
            sql.push(" OFFSET ");
            sql.arg(Arg::Int(query.offset as i64));
            sql.query().fetch_all(&mut *conn).await?.iter().map(resource_from_row).collect()
        }
    };
    let included = includes(conn, query, &matches).await?;
    Ok(SearchResult { total, matches, included })
}

/// The date parameter of a search sorted by it ascending (then by id): the order of work queues
/// ("my queue, open, due first"), served by [`page_by_date`].
fn date_order(query: &SearchQuery) -> Option<&str> {
    match query.sort.as_slice() {
        [SortKey { by: SortBy::Date(param), descending: false }]
        | [SortKey { by: SortBy::Date(param), descending: false }, SortKey { by: SortBy::Id, descending: false }] => {
            Some(param)
        }
        _ => None,
    }
}

/// The condition that the `idx_date` row `s` is the earliest value of its resource for its
/// parameter (values of one parameter are distinct, so exactly one row per resource passes).
fn earliest(backend: Backend) -> String {
    // Without statistics SQLite's planner probes with `idx_date_order` (resource_type, param),
    // a scan of every value of the parameter for each row, instead of the resource's few rows.
    let index = match backend {
        Backend::Sqlite => " INDEXED BY idx_date_owner",
        Backend::Postgres => "",
    };
    format!(
        " AND NOT EXISTS (SELECT 1 FROM idx_date e{index} WHERE e.resource_type = s.resource_type \
         AND e.id = s.id AND e.param = s.param AND (e.low < s.low OR (e.low = s.low AND e.high < s.high)))"
    )
}

/// A page of a search sorted by a date ascending, the same page the general ORDER BY gives:
/// resources by their earliest value, then those without a value by id. Instead of computing the
/// key of every match and sorting them all, it walks an index in date order and stops when the
/// page is full: for Tasks by status and `due`, the worklist (`task_worklist_order`), which holds
/// only Tasks in the asked statuses; otherwise the date index (`idx_date_order`).
async fn page_by_date(
    conn: &mut AnyConnection,
    backend: Backend,
    query: &SearchQuery,
    param: &str,
) -> Result<Vec<StoredResource>, sqlx::Error> {
    let worklist = WorklistFilter::of(query).filter(|_| param == "due");
    let with_value = |select: &str| {
        if let Some(filter) = &worklist {
            let mut sql = worklist_sql(select, query, filter);
            sql.push(" AND q.due IS NOT NULL");
            return sql;
        }
        let mut sql = Sql::default();
        sql.push(&format!(
            "SELECT {select} FROM idx_date s JOIN resources r ON r.resource_type = s.resource_type AND r.id = s.id \
             WHERE s.resource_type = "
        ));
        sql.text(&query.resource_type);
        sql.push(" AND s.param = ");
        sql.text(param);
        sql.push(&earliest(backend));
        sql.push(" AND r.deleted = 0");
        push_criteria(&mut sql, query, Probe::Each);
        sql
    };
    let mut sql = with_value(COLUMNS);
    sql.push(if worklist.is_some() { " ORDER BY q.due ASC, q.id ASC" } else { " ORDER BY s.low ASC, s.id ASC" });
    sql.push(" LIMIT ");
    sql.arg(Arg::Int(query.count as i64));
    sql.push(" OFFSET ");
    sql.arg(Arg::Int(query.offset as i64));
    let mut page: Vec<StoredResource> =
        sql.query().fetch_all(&mut *conn).await?.iter().map(resource_from_row).collect();
    if page.len() == query.count {
        return Ok(page);
    }
    // The page reaches past the resources with a value: how many there are decides where in the
    // ones without a value it continues.
    let with_count = if page.is_empty() {
        with_value("COUNT(*)").query().fetch_one(&mut *conn).await?.get::<i64, _>(0) as usize
    } else {
        query.offset + page.len()
    };
    let mut sql = base_sql(COLUMNS, query);
    if worklist.is_some() {
        sql.push(" AND q.due IS NULL");
    } else {
        sql.push(" AND NOT EXISTS (SELECT 1 FROM idx_date e WHERE e.resource_type = r.resource_type AND e.id = r.id AND e.param = ");
        sql.text(param);
        sql.push(")");
    }
    sql.push(" ORDER BY r.id ASC LIMIT ");
    sql.arg(Arg::Int((query.count - page.len()) as i64));
    sql.push(" OFFSET ");
    sql.arg(Arg::Int(query.offset.saturating_sub(with_count) as i64));
    page.extend(sql.query().fetch_all(&mut *conn).await?.iter().map(resource_from_row));
    Ok(page)
}

/// Follows `_include` and `_revinclude` from the page of matches, iterating where asked.
async fn includes(
    conn: &mut AnyConnection,
    query: &SearchQuery,
    matches: &[StoredResource],
) -> Result<Vec<StoredResource>, sqlx::Error> {
    let mut seen: HashSet<(String, String)> = matches.iter().map(|r| (r.resource_type.clone(), r.id.clone())).collect();
    let mut included = Vec::new();
    let mut frontier: Vec<StoredResource> = matches.to_vec();
    for round in 0..MAX_INCLUDE_ROUNDS {
        let mut found = Vec::new();
        for (include, forward) in
            query.include.iter().map(|i| (i, true)).chain(query.revinclude.iter().map(|i| (i, false)))
        {
            if round > 0 && !include.iterate {
                continue;
            }
            for resource in follow(conn, include, forward, &frontier).await? {
                if seen.insert((resource.resource_type.clone(), resource.id.clone())) {
                    found.push(resource);
                }
            }
        }
        if found.is_empty() {
            break;
        }
        included.extend(found.iter().cloned());
        frontier = found;
    }
    Ok(included)
}

async fn follow(
    conn: &mut AnyConnection,
    include: &Include,
    forward: bool,
    from: &[StoredResource],
) -> Result<Vec<StoredResource>, sqlx::Error> {
    let mut sql = Sql::default();
    let ids: Vec<&str> = if forward {
        from.iter().filter(|r| r.resource_type == include.source_type).map(|r| r.id.as_str()).collect()
    } else {
        from.iter().map(|r| r.id.as_str()).collect()
    };
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let columns = "t.resource_type, t.id, t.version_id, t.last_updated, t.deleted, t.content";
    if forward {
        sql.push(&format!(
            "SELECT DISTINCT {columns} FROM idx_reference i JOIN resources t ON t.resource_type = i.target_type AND t.id = i.target_id \
             WHERE t.deleted = 0 AND i.resource_type = "
        ));
        sql.text(&include.source_type);
        sql.push(" AND ");
        push_in_list(&mut sql, "i.id", &ids);
    } else {
        sql.push(&format!(
            "SELECT DISTINCT {columns} FROM idx_reference i JOIN resources t ON t.resource_type = i.resource_type AND t.id = i.id \
             WHERE t.deleted = 0 AND i.resource_type = "
        ));
        sql.text(&include.source_type);
        sql.push(" AND ");
        push_in_list(&mut sql, "i.target_id", &ids);
    }
    if include.param != "*" {
        sql.push(" AND i.param = ");
        sql.text(&include.param);
    }
    if let Some(target) = &include.target_type {
        sql.push(" AND i.target_type = ");
        sql.text(target);
    }
    if !forward {
        // The reverse direction must point at one of the page's own types.
        let types: HashSet<&str> = from.iter().map(|r| r.resource_type.as_str()).collect();
        sql.push(" AND ");
        push_in_list(&mut sql, "i.target_type", &types);
    }
    sql.push(" ORDER BY t.resource_type, t.id");
    Ok(sql.query().fetch_all(conn).await?.iter().map(resource_from_row).collect())
}

/// How a running search's database work is stopped early.
enum Cancel {
    /// The connection's statement deadline (see [`crate::deadline`]).
    Sqlite(Arc<Deadline>),
    /// The connection's server process, for `pg_cancel_backend` from another connection.
    Postgres { pool: AnyPool, pid: i32 },
}

/// A pooled connection running one search under a time limit. If the search ends in time, the
/// limit is lifted and the connection goes back to the pool. Otherwise (the limit passed, the
/// search failed, or the request went away and dropped it) the statement still running is
/// cancelled and the connection closed, so that nothing of the search outlives it.
struct Bounded {
    conn: PoolConnection<Any>,
    cancel: Cancel,
    done: bool,
}

impl Bounded {
    async fn start(store: &Store, timeout: Duration) -> Result<Bounded, sqlx::Error> {
        let mut conn = store.pool.acquire().await?;
        let millis = timeout.as_millis().max(1) as i64;
        let cancel = match store.backend {
            Backend::Sqlite => {
                let key: i64 = sqlx::query("SELECT rex_deadline($1)")
                    .bind(now_micros() + millis * 1000)
                    .fetch_one(&mut *conn)
                    .await?
                    .get(0);
                let deadline =
                    find_deadline(key).ok_or_else(|| sqlx::Error::Protocol("no statement deadline".into()))?;
                Cancel::Sqlite(deadline)
            }
            Backend::Postgres => {
                let row = sqlx::query("SELECT pg_backend_pid(), set_config('statement_timeout', $1, false)")
                    .bind(millis.to_string())
                    .fetch_one(&mut *conn)
                    .await?;
                Cancel::Postgres { pool: store.pool.clone(), pid: row.get(0) }
            }
        };
        Ok(Bounded { conn, cancel, done: false })
    }

    /// Counts the matches of `query` if that takes at most `budget`; `None` when it would take
    /// longer (the count is stopped) or the search's own deadline comes first.
    async fn count_within(
        &mut self,
        query: &SearchQuery,
        budget: Duration,
        deadline: Instant,
    ) -> Result<Option<i64>, sqlx::Error> {
        let budget = budget.min(deadline.saturating_duration_since(Instant::now()));
        self.limit(budget).await?;
        let counted = count(&mut self.conn, query).await;
        self.limit(deadline.saturating_duration_since(Instant::now())).await?;
        match counted {
            Ok(total) => Ok(Some(total)),
            Err(err) if is_cancelled(&err, self.backend()) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Stops the connection's statements from now on once `timeout` has passed.
    async fn limit(&mut self, timeout: Duration) -> Result<(), sqlx::Error> {
        let millis = timeout.as_millis().max(1) as i64;
        match &self.cancel {
            Cancel::Sqlite(deadline) => deadline.set(now_micros() + millis * 1000),
            Cancel::Postgres { .. } => {
                sqlx::query("SELECT set_config('statement_timeout', $1, false)")
                    .bind(millis.to_string())
                    .execute(&mut *self.conn)
                    .await?;
            }
        }
        Ok(())
    }

    fn backend(&self) -> Backend {
        match self.cancel {
            Cancel::Sqlite(_) => Backend::Sqlite,
            Cancel::Postgres { .. } => Backend::Postgres,
        }
    }

    /// Lifts the limit from the connection, which then goes back to the pool.
    async fn finish(mut self) -> Result<(), sqlx::Error> {
        match &self.cancel {
            Cancel::Sqlite(deadline) => deadline.clear(),
            Cancel::Postgres { .. } => {
                sqlx::query("SELECT set_config('statement_timeout', '0', false)").execute(&mut *self.conn).await?;
            }
        }
        self.done = true;
        Ok(())
    }
}

impl Drop for Bounded {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.conn.close_on_drop();
        match &self.cancel {
            Cancel::Sqlite(deadline) => deadline.expire(),
            Cancel::Postgres { pool, pid } => {
                let (pool, pid) = (pool.clone(), *pid);
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        let _ = sqlx::query("SELECT pg_cancel_backend($1)").bind(pid).execute(&pool).await;
                    });
                }
            }
        }
    }
}

/// Whether a database error is the cancellation of a statement at its deadline.
fn is_cancelled(err: &sqlx::Error, backend: Backend) -> bool {
    let sqlx::Error::Database(db) = err else { return false };
    let code = db.code().unwrap_or_default();
    match backend {
        Backend::Sqlite => code == "9",
        Backend::Postgres => code == "57014",
    }
}

fn timed_out(timeout: Duration) -> StoreError {
    StoreError::TooCostly(Issue::error(IssueCode::TooCostly, msg!("search-timed-out", limit = timeout.as_millis())))
}

/// How long counting the total of a search may take when the total is only estimated (the
/// default, [`Total::Estimate`]): a broad search of a large database answers its page without
/// the total rather than spend its time counting.
pub const ESTIMATE_BUDGET: Duration = Duration::from_millis(200);

impl Store {
    /// Runs a search, stopped with [`StoreError::TooCostly`] when it takes longer than the search
    /// timeout ([`Store::set_search_timeout`]); dropping the future stops its database work too.
    pub async fn search(&self, query: &SearchQuery) -> Result<SearchResult, StoreError> {
        let timeout = self.search_timeout();
        let deadline = Instant::now() + timeout;
        let work = async {
            let mut bounded = Bounded::start(self, timeout).await?;
            let estimate = match query.total == Total::Estimate && !query.summary_count {
                true => bounded.count_within(query, ESTIMATE_BUDGET, deadline).await?,
                false => None,
            };
            let mut result = search(&mut bounded.conn, self.backend, query, query.total == Total::Accurate).await?;
            result.total = result.total.or(estimate);
            bounded.finish().await?;
            Ok::<_, sqlx::Error>(result)
        };
        // The database stops at the deadline; this bounds the wait for a connection as well.
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(err)) if is_cancelled(&err, self.backend) => Err(timed_out(timeout)),
            Ok(Err(err)) => Err(err.into()),
            Err(_) => Err(timed_out(timeout)),
        }
    }
}

impl Tx {
    /// Runs a search as this transaction sees the data (conditional create, update and delete).
    ///
    /// Rows this transaction has queued are sent first when the search could read them: when they
    /// are of the searched type, or when the search includes other resources. A referral's Task
    /// looks up its partner's Subscriptions; sending the whole Bundle's rows for that would split
    /// them into two batches of INSERTs, each a round trip to the writer.
    pub async fn search(&mut self, query: &SearchQuery) -> Result<SearchResult, StoreError> {
        let includes_others = !query.include.is_empty() || !query.revinclude.is_empty();
        if includes_others || self.pending.holds_type(&query.resource_type) {
            self.flush().await?;
        }
        let (backend, timeout) = (self.backend, self.search_timeout);
        // The search runs while the transaction holds the writer (SQLite) or its locks: bounded
        // like any search, the whole write then fails as too costly.
        self.limit_statements(Some(timeout)).await?;
        // Within a transaction (a search entry of a Bundle) an estimate is counted: the whole
        // search has the transaction's statement limit.
        let result = search(self.conn().await?, backend, query, query.total != Total::None).await;
        let lifted = self.limit_statements(None).await;
        match result {
            Err(err) if is_cancelled(&err, backend) => Err(timed_out(timeout)),
            Err(err) => Err(err.into()),
            Ok(found) => lifted.map(|()| found),
        }
    }

    /// Interrupts the statements this transaction runs from now on once `timeout` has passed;
    /// `None` lifts the limit. On PostgreSQL the limit ends with the transaction at the latest.
    async fn limit_statements(&mut self, timeout: Option<Duration>) -> Result<(), StoreError> {
        let backend = self.backend;
        let statement = match backend {
            Backend::Sqlite => sqlx::query("SELECT rex_deadline($1)")
                .bind(timeout.map_or(0, |t| now_micros() + t.as_micros().max(1) as i64)),
            Backend::Postgres => sqlx::query("SELECT set_config('statement_timeout', $1, true)")
                .bind(timeout.map_or(0, |t| t.as_millis().max(1) as i64).to_string()),
        };
        statement.execute(self.conn().await?).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use rex_fhir::query::{Handling, SearchQuery};
    use rex_fhir::search::SearchRegistry;
    use serde_json::json;

    use sqlx::Row;

    use crate::{Isolation, TempStore};

    fn query(resource_type: &str, search: &str) -> SearchQuery {
        let pairs: Vec<(String, String)> = search
            .split('&')
            .map(|pair| pair.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).unwrap())
            .collect();
        SearchQuery::parse(SearchRegistry::r4(), resource_type, &pairs, Handling::Strict).unwrap()
    }

    fn ids(result: &crate::SearchResult) -> Vec<String> {
        result.matches.iter().chain(&result.included).map(|r| format!("{}/{}", r.resource_type, r.id)).collect()
    }

    /// An estimated total is counted while that is cheap and left out when counting takes longer
    /// than its budget; the connection then serves the page as before.
    #[tokio::test]
    async fn an_estimate_too_costly_to_count_is_left_out() {
        let temp = TempStore::new().await;
        let mut tx = temp.store.begin(Isolation::Serializable).await.unwrap();
        for n in 0..3000 {
            let observation = json!({"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": format!("{}", n % 50)}]},
                "effectiveDateTime": format!("{}-{:02}-{:02}", 1990 + n % 35, 1 + n % 12, 1 + n % 28)});
            tx.create("Observation", &format!("o{n}"), observation).await.unwrap();
        }
        tx.commit().await.unwrap();
        let broad = query("Observation", "date=ge1900&code=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15&_count=5");
        let time = Duration::from_secs(30);
        let deadline = Instant::now() + time;
        let mut bounded = super::Bounded::start(&temp.store, time).await.unwrap();
        assert_eq!(bounded.count_within(&broad, time, deadline).await.unwrap(), Some(900));
        assert_eq!(bounded.count_within(&broad, Duration::from_micros(1), deadline).await.unwrap(), None);
        let page = super::search(&mut bounded.conn, crate::Backend::Sqlite, &broad, false).await.unwrap();
        assert_eq!((page.matches.len(), page.total), (5, None));
        bounded.finish().await.unwrap();
        let found = temp.store.search(&broad).await.unwrap();
        assert_eq!((found.matches.len(), found.total), (5, Some(900)), "cheap enough at the default budget");
        temp.store.close().await;
    }

    /// A bare id of a reference parameter finds references of any of its target types, from the
    /// target index (it used to probe every resource of the type: 5 s on 100,000 referrals).
    #[tokio::test]
    async fn a_bare_reference_id_finds_each_declared_target_type() {
        let temp = TempStore::new().await;
        let mut tx = temp.store.begin(Isolation::Serializable).await.unwrap();
        for (id, subject) in [("o1", "Patient/x"), ("o2", "Group/x"), ("o3", "Patient/y")] {
            let observation = json!({"resourceType": "Observation", "status": "final", "subject": {"reference": subject},
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}});
            tx.create("Observation", id, observation).await.unwrap();
        }
        tx.commit().await.unwrap();
        let found = temp.store.search(&query("Observation", "subject=x&_sort=_id")).await.unwrap();
        assert_eq!(ids(&found), ["Observation/o1", "Observation/o2"]);
        assert_eq!(found.total, Some(2));
        let found = temp.store.search(&query("Observation", "patient=x")).await.unwrap();
        assert_eq!(ids(&found), ["Observation/o1"]);
        temp.store.close().await;
    }

    /// A transaction's searches see the rows it has queued: of the searched type, and of other
    /// types that the search includes.
    #[tokio::test]
    async fn searches_in_a_transaction_see_its_own_queued_rows() {
        let temp = TempStore::new().await;
        let mut tx = temp.store.begin(Isolation::Serializable).await.unwrap();
        tx.create("Patient", "p", json!({"resourceType": "Patient", "name": [{"family": "Okafor"}]})).await.unwrap();
        let other_type = tx.search(&query("Observation", "code=8867-4")).await.unwrap();
        assert!(other_type.matches.is_empty());
        tx.create(
            "Observation",
            "o",
            json!({"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/p"},
                   "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}}),
        )
        .await
        .unwrap();
        let included = tx.search(&query("Patient", "family=okafor&_revinclude=Observation:subject")).await.unwrap();
        assert_eq!(ids(&included), ["Patient/p", "Observation/o"]);
        tx.create(
            "Observation",
            "o2",
            json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}}),
        )
        .await
        .unwrap();
        let same_type = tx.search(&query("Observation", "code=8867-4&_sort=_id")).await.unwrap();
        assert_eq!(ids(&same_type), ["Observation/o", "Observation/o2"]);
        tx.commit().await.unwrap();
        temp.store.close().await;
    }

    /// A date criterion is checked per candidate from the resource's own rows of the date index,
    /// on a database with no statistics (as rex's always were): SQLite used to probe with
    /// `idx_date_order`, a scan of every value in the range per candidate (quadratic: 74 s for
    /// `Observation?date=sa2020` on 40,000 Observations).
    #[tokio::test]
    async fn date_criteria_probe_each_resources_own_rows_without_statistics() {
        let temp = TempStore::new().await;
        let mut conn = temp.store.pool.acquire().await.unwrap();
        sqlx::query("DROP TABLE IF EXISTS sqlite_stat1").execute(&mut *conn).await.unwrap();
        for search in ["date=sa2020", "date=ge2000", "date=eb2020-03", "date=ap2020"] {
            let sql = super::base_sql("COUNT(*)", &query("Observation", search));
            let explain = super::Sql { text: format!("EXPLAIN QUERY PLAN {}", sql.text), args: sql.args.clone() };
            let plan: Vec<String> = explain
                .query()
                .fetch_all(&mut *conn)
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<String, _>(3))
                .collect();
            let probe = plan.iter().find(|step| step.contains(" i ")).unwrap_or_else(|| panic!("{search}: {plan:?}"));
            assert!(probe.contains("idx_date_owner (resource_type=? AND id=? AND param=?"), "{search}: {plan:?}");
        }
        drop(conn);
        temp.store.close().await;
    }
}
