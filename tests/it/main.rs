//! End-to-end tests of rex: the production router on port 0 with a fresh database per test, run
//! against SQLite always and against PostgreSQL when `REX_TEST_POSTGRES_URL` is set (those tests are
//! `#[ignore]`d; run them with `cargo test --test it -- --ignored`).

mod support;

mod attachments;
mod audit_trail;
mod bench;
mod cli;
mod concurrency;
mod consent;
mod consult;
mod crud;
mod docs;
mod errors;
mod escalation;
mod examples;
mod fixtures;
mod guide;
mod intake;
mod invalid_fixtures;
mod language;
mod limits;
mod logging;
mod message;
mod notifications;
mod operations;
mod opinion;
mod profile_claims;
mod references;
mod retention;
mod scale_out;
mod scorecard;
mod search;
mod security;
mod send;
mod sign_in;
mod transaction;
mod validate;
mod web;
mod workflow;
mod xml;
