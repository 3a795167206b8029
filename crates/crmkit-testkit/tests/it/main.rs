//! The conformance suite on every configured backend (see `crmkit_testkit::backends`):
//! memory and SQLite always, PostgreSQL and MySQL when their URL variables are set.
//! `CRMKIT_TESTKIT_ONLY=memory` (comma-separated backend names) restricts a run.

mod activities;
mod contacts;
mod directory;
mod pipeline_campaigns;
mod pipeline_deals;
mod pipeline_leads;
mod queries;
mod records;
mod self_test;
mod storage;
mod tickets;
mod tickets_analytics;
mod tickets_calls;
mod tickets_sla;
