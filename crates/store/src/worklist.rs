//! `task_worklist`: one row per live Task with its status, owner and earliest due time, kept in the
//! Task's write transaction. Searches of Tasks by status (and owner) start from it, so a queue page
//! reads the Tasks in the asked statuses only, not every Task the queue ever had.

use rex_fhir::query::{Match, Prefix, SearchQuery};
use rex_fhir::search::{IndexEntry, IndexValue};

use crate::Backend;
use crate::rows::{AnyQuery, placeholders};

/// The `task_worklist` row of one Task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorklistRow {
    pub id: String,
    pub status: String,
    /// `Type/id` of the owner, when it is a literal reference to a resource.
    pub owner: Option<String>,
    /// The earliest `due` value (microseconds), as a search sorted by `due` orders Tasks.
    pub due: Option<i64>,
}

impl WorklistRow {
    /// The row of Task `id` from its search index entries; `None` without a status code. The same
    /// rule fills the table from the index in migration 8.
    pub fn of_task(id: &str, entries: &[IndexEntry]) -> Option<Self> {
        let mut status = None;
        let mut owner = None;
        let mut due: Option<i64> = None;
        for entry in entries {
            match (entry.param.as_str(), &entry.value) {
                ("status", IndexValue::Token { code: Some(code), .. }) => status = status.or(Some(code)),
                ("owner", IndexValue::Reference { target_type: Some(kind), target_id: Some(target), .. }) => {
                    owner = owner.or_else(|| Some(format!("{kind}/{target}")));
                }
                ("due", IndexValue::Date { low, .. }) => due = Some(due.map_or(*low, |due| due.min(*low))),
                _ => {}
            }
        }
        Some(WorklistRow { id: id.to_string(), status: status?.clone(), owner, due })
    }
}

/// Values of one worklist row.
pub(crate) const COLUMNS: usize = 4;

/// The INSERT of `rows` worklist rows; [`bind_rows`] binds their values.
pub(crate) fn insert_sql(backend: Backend, rows: usize) -> String {
    format!("INSERT INTO task_worklist (id, status, owner, due) VALUES {}", placeholders(backend, rows, COLUMNS))
}

pub(crate) fn bind_rows<'q>(mut query: AnyQuery<'q>, rows: &'q [WorklistRow]) -> AnyQuery<'q> {
    for row in rows {
        query = query.bind(row.id.as_str()).bind(row.status.as_str()).bind(row.owner.as_deref()).bind(row.due);
    }
    query
}

/// What a Task search's `status`, `owner` and `due` criteria allow, as conditions on the
/// worklist's columns. Every Task the search can match meets them, so starting from the worklist
/// rows that do loses nothing; the criteria are still checked on each row as usual.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct WorklistFilter {
    /// `q.status IN (...)`.
    pub statuses: Vec<String>,
    /// `q.owner IN (...)`, when every alternative of an `owner` criterion names a typed target.
    pub owners: Option<Vec<String>>,
    /// `q.due <= ...`, from `due=lt`, `le` and `eb` criteria: a Task with a due value before the
    /// bound has its earliest one before it too. (Other prefixes also look at where a value ends.)
    pub due_at_most: Option<i64>,
}

impl WorklistFilter {
    /// The filter of a Task search with a plain `status` criterion (codes, no `:not`); `None`
    /// for any other search.
    pub fn of(query: &SearchQuery) -> Option<Self> {
        if query.resource_type != "Task" {
            return None;
        }
        let plain = |param: &'static str| {
            query.criteria.iter().filter(move |criterion| criterion.param == param && !criterion.negated)
        };
        let statuses = plain("status").find_map(|criterion| {
            let codes = criterion.alternatives.iter().map(|alternative| match alternative {
                Match::Token { code: Some(code), .. } => Some(code.clone()),
                _ => None,
            });
            codes.collect::<Option<Vec<String>>>()
        })?;
        let owners = plain("owner").find_map(|criterion| {
            let targets = criterion.alternatives.iter().map(|alternative| match alternative {
                Match::Reference { target_type: Some(kind), id } => Some(format!("{kind}/{id}")),
                _ => None,
            });
            targets.collect::<Option<Vec<String>>>()
        });
        let due_at_most = plain("due")
            .filter_map(|criterion| match criterion.alternatives.as_slice() {
                [Match::Date { prefix: Prefix::Lt | Prefix::Eb, low, .. }] => Some(low - 1),
                [Match::Date { prefix: Prefix::Le, high, .. }] => Some(*high),
                _ => None,
            })
            .min();
        Some(WorklistFilter { statuses, owners, due_at_most })
    }
}

#[cfg(test)]
mod tests {
    use rex_fhir::query::Handling;
    use rex_fhir::search::SearchRegistry;

    use super::*;

    fn entry(param: &str, value: IndexValue) -> IndexEntry {
        IndexEntry { param: param.into(), value }
    }

    #[test]
    fn a_task_row_takes_status_owner_and_the_earliest_due() {
        let entries = vec![
            entry("due", IndexValue::Date { low: 50, high: 60 }),
            entry(
                "status",
                IndexValue::Token {
                    system: Some("http://hl7.org/fhir/task-status".into()),
                    code: Some("requested".into()),
                },
            ),
            entry("owner", IndexValue::Reference { target_type: None, target_id: None, url: "#queue".into() }),
            entry(
                "owner",
                IndexValue::Reference {
                    target_type: Some("HealthcareService".into()),
                    target_id: Some("cardiology".into()),
                    url: "HealthcareService/cardiology".into(),
                },
            ),
            entry("due", IndexValue::Date { low: 20, high: 90 }),
        ];
        let row = WorklistRow::of_task("t1", &entries).unwrap();
        assert_eq!(
            row,
            WorklistRow {
                id: "t1".into(),
                status: "requested".into(),
                owner: Some("HealthcareService/cardiology".into()),
                due: Some(20)
            }
        );
        let without_status: Vec<IndexEntry> = entries.into_iter().filter(|e| e.param != "status").collect();
        assert_eq!(WorklistRow::of_task("t1", &without_status), None);
    }

    fn filter_of(resource_type: &str, search: &str) -> Option<WorklistFilter> {
        let pairs: Vec<(String, String)> = search
            .split('&')
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap();
                (name.to_string(), value.to_string())
            })
            .collect();
        let query = SearchQuery::parse(SearchRegistry::r4(), resource_type, &pairs, Handling::Strict).unwrap();
        WorklistFilter::of(&query)
    }

    #[test]
    fn only_plain_status_criteria_of_tasks_use_the_worklist() {
        let filter =
            filter_of("Task", "owner=HealthcareService/cardiology&status=requested,accepted&_sort=due").unwrap();
        assert_eq!(filter.statuses, ["requested", "accepted"]);
        assert_eq!(filter.owners.unwrap(), ["HealthcareService/cardiology"]);
        assert_eq!(filter.due_at_most, None);

        assert_eq!(filter_of("Task", "owner=HealthcareService/cardiology"), None, "no status: any Task can match");
        assert_eq!(filter_of("Task", "status:not=completed"), None);
        assert_eq!(filter_of("Task", "status:missing=true"), None);
        assert_eq!(filter_of("ServiceRequest", "status=active"), None);
        let untyped = filter_of("Task", "owner=cardiology&status=requested").unwrap();
        assert_eq!(untyped.owners, None, "an owner without a type narrows nothing");
        let system = filter_of("Task", "status=http://hl7.org/fhir/task-status|requested").unwrap();
        assert_eq!(system.statuses, ["requested"]);
    }

    #[test]
    fn due_criteria_that_bound_the_earliest_due_narrow_it() {
        let due = |search: &str| filter_of("Task", &format!("status=requested&{search}")).unwrap().due_at_most;
        let day = |date: &str| rex_fhir::datetime::parse_date_range(date).unwrap();
        assert_eq!(due("due=lt2026-12-04"), Some(day("2026-12-04").0 - 1));
        assert_eq!(due("due=eb2026-12-04"), Some(day("2026-12-04").0 - 1));
        assert_eq!(due("due=le2026-12-04"), Some(day("2026-12-04").1));
        assert_eq!(due("due=lt2026-12-04&due=lt2026-12-02"), Some(day("2026-12-02").0 - 1), "the tighter");
        assert_eq!(due("due=ge2026-12-04"), None);
        assert_eq!(due("due=2026-12-04"), None);
        assert_eq!(due("due=lt2026-12-04,lt2026-12-05"), None, "alternatives are not narrowed");
    }

    /// Migration 8 fills the worklist of Tasks written before it from their index rows: it must
    /// give the rows the code writes.
    #[tokio::test]
    async fn the_migration_backfill_gives_the_rows_the_code_writes() {
        use serde_json::json;
        use sqlx::Row;

        use crate::{Isolation, TempStore};

        let temp = TempStore::new().await;
        let store = &temp.store;
        let task = |status: &str, owner: Option<&str>, due: Option<&str>| {
            let mut task = json!({"resourceType": "Task", "status": status, "intent": "order"});
            if let Some(owner) = owner {
                task["owner"] = json!({"reference": owner});
            }
            if let Some(due) = due {
                task["restriction"] = json!({"period": {"start": "2026-01-01", "end": due}});
            }
            task
        };
        let mut tx = store.begin(Isolation::Serializable).await.unwrap();
        tx.create("Task", "a", task("requested", Some("HealthcareService/cardiology"), Some("2026-12-04T10:00:00Z")))
            .await
            .unwrap();
        tx.create("Task", "b", task("in-progress", Some("PractitionerRole/dr-lee"), None)).await.unwrap();
        tx.create("Task", "c", task("requested", Some("#contained"), Some("2026-12"))).await.unwrap();
        tx.create("Task", "d", task("requested", None, None)).await.unwrap();
        tx.create("Task", "gone", task("requested", None, None)).await.unwrap();
        tx.create("Patient", "p", json!({"resourceType": "Patient"})).await.unwrap();
        tx.commit().await.unwrap();
        let mut tx = store.begin(Isolation::Serializable).await.unwrap();
        tx.update("Task", "a", task("completed", Some("HealthcareService/cardiology"), Some("2026-12-05")), None)
            .await
            .unwrap();
        tx.delete("Task", "gone", None).await.unwrap();
        tx.commit().await.unwrap();

        let rows = || async {
            let rows = sqlx::query("SELECT id, status, owner, due FROM task_worklist ORDER BY id")
                .fetch_all(&store.pool)
                .await
                .unwrap();
            rows.iter()
                .map(|row| {
                    (
                        row.get::<String, _>(0),
                        row.get::<String, _>(1),
                        row.get::<Option<String>, _>(2),
                        row.get::<Option<i64>, _>(3),
                    )
                })
                .collect::<Vec<_>>()
        };
        let written = rows().await;
        let ids: Vec<&str> = written.iter().map(|row| row.0.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "d"]);
        assert_eq!(written[0].1, "completed");
        assert_eq!(written[1].2.as_deref(), Some("PractitionerRole/dr-lee"));
        assert_eq!(written[2].2, None);
        assert!(written[0].3.is_some() && written[1].3.is_none());

        let migration = include_str!("../../../migrations/sqlite/0008_task_worklist.sql");
        let backfill = &migration[migration.find("INSERT INTO task_worklist").unwrap()..];
        sqlx::query("DELETE FROM task_worklist").execute(&store.pool).await.unwrap();
        sqlx::query(backfill).execute(&store.pool).await.unwrap();
        assert_eq!(rows().await, written);
        store.close().await;
    }
}
