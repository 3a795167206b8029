//! Small helpers the suite modules share: times and clocks, the change feed followed page
//! by page, and row counts (what a failed command must leave unchanged).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use crmkit_core::store::{Cond, Fault};
use crmkit_core::{Ctx, Event, ManualClock, Page, Query, RecordRef, Store, UserId};

use crate::check::{At, CheckFuture, CheckResult, Failure};

/// A fixture that extends the contacts fixture: `pub struct $name` holding the contacts
/// fixture as `base` (and dereferencing to it) plus the given public fields.
macro_rules! extended_fixture {
    (
        $(#[$doc:meta])*
        $name:ident { $($(#[$fdoc:meta])* $field:ident: $ty:ty),* $(,)? }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            /// The contacts fixture.
            pub base: $crate::contacts::Fixture,
            $($(#[$fdoc])* pub $field: $ty,)*
        }

        impl std::ops::Deref for $name {
            type Target = $crate::contacts::Fixture;
            fn deref(&self) -> &Self::Target {
                &self.base
            }
        }
    };
}

/// How many events a page of the change feed asks for.
const FEED_PAGE: u32 = 500;

/// `y-m-d h:00:00` UTC.
pub(crate) fn t(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

/// The date `y-m-d`.
pub(crate) fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// The user acting in `ctx`.
pub(crate) fn user(ctx: &Ctx) -> UserId {
    ctx.actor().user
}

/// A context of the same actor with a manual clock at `at`.
pub(crate) fn at_time(ctx: &Ctx, at: DateTime<Utc>) -> (Ctx, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(at));
    (ctx.clone().with_clock(clock.clone()), clock)
}

/// Every event `ctx` reads from the change feed after sequence `after`, in order, following
/// the feed page by page to its end.
pub(crate) async fn events_after(store: &Store, ctx: &Ctx, after: u64) -> CheckResult<Vec<Event>> {
    let mut out: Vec<Event> = vec![];
    let mut after = after;
    loop {
        let page = store
            .events_since(ctx, after, FEED_PAGE)
            .await
            .at("events_since")?;
        let Some(last) = page.last() else {
            return Ok(out);
        };
        after = last.seq;
        out.extend(page);
    }
}

/// The sequence of the last event `ctx` reads from the change feed (`0` when none).
pub(crate) async fn last_seq(store: &Store, ctx: &Ctx) -> CheckResult<u64> {
    Ok(events_after(store, ctx, 0)
        .await?
        .last()
        .map_or(0, |e| e.seq))
}

/// Every event about `record` that `ctx` reads from the change feed, in order.
pub(crate) async fn record_events(
    store: &Store,
    ctx: &Ctx,
    record: impl Into<RecordRef>,
) -> CheckResult<Vec<Event>> {
    let record = record.into();
    let mut events = events_after(store, ctx, 0).await?;
    events.retain(|e| e.record == record);
    Ok(events)
}

/// The kinds of the events about `record` that `ctx` reads from the change feed, in order.
pub(crate) async fn record_event_kinds(
    store: &Store,
    ctx: &Ctx,
    record: impl Into<RecordRef>,
) -> CheckResult<Vec<String>> {
    let events = record_events(store, ctx, record).await?;
    Ok(events.into_iter().map(|e| e.kind).collect())
}

/// The number of rows of `ctx`'s tenant in `table`.
pub(crate) async fn count(store: &Store, ctx: &Ctx, table: &str) -> CheckResult<u64> {
    store
        .backend()
        .count(ctx.tenant(), table, &Cond::True)
        .await
        .at("count rows")
}

/// The number of rows of `ctx`'s tenant in each of `tables`.
pub(crate) async fn row_counts(
    store: &Store,
    ctx: &Ctx,
    tables: impl IntoIterator<Item = &'static str>,
) -> CheckResult<BTreeMap<&'static str, u64>> {
    let mut rows = BTreeMap::new();
    for t in tables {
        rows.insert(t, count(store, ctx, t).await?);
    }
    Ok(rows)
}

/// The number of rows of `ctx`'s tenant in every table of the store's schema.
pub(crate) async fn all_row_counts(
    store: &Store,
    ctx: &Ctx,
) -> CheckResult<BTreeMap<&'static str, u64>> {
    let tables: Vec<&'static str> = store.backend().schema().tables().map(|t| t.name).collect();
    row_counts(store, ctx, tables).await
}

/// Every item of a paged listing, from query `q` on, following cursors: `list` fetches one
/// page (`what` names it in failures). Fails when a page holds more than `q.limit` items or
/// the paging does not end.
pub(crate) async fn all_pages<T, Fut>(
    q: &Query,
    what: &str,
    mut list: impl FnMut(Query) -> Fut,
) -> CheckResult<Vec<T>>
where
    Fut: Future<Output = crmkit_core::Result<Page<T>>>,
{
    let mut q = q.clone();
    let mut out = vec![];
    for _ in 0..100_000 {
        let page = list(q.clone()).await.at(what)?;
        ensure!(
            page.items.len() <= q.limit as usize,
            "{what}: a page of {} items for limit {}",
            page.items.len(),
            q.limit
        );
        out.extend(page.items);
        match page.next_cursor {
            Some(cur) => q.cursor = Some(cur),
            None => return Ok(out),
        }
    }
    Err(Failure::new(format!("{what}: paging did not end")))
}

/// Runs a proptest property on one store, which `factory` opens inside a runtime of the
/// property's own: `cases` cases drawn from `strategy`, shrinking a failure at most
/// `max_shrink_iters` times; `what` names the property in the failure, with the minimal
/// input.
pub(crate) fn run_property<S, F, Fut>(
    what: &str,
    factory: F,
    strategy: S,
    (cases, max_shrink_iters): (u32, u32),
    case: impl Fn(&Store, S::Value) -> CheckFuture<'_>,
) -> CheckResult
where
    S: proptest::strategy::Strategy,
    S::Value: std::fmt::Debug,
    F: FnOnce() -> Fut,
    Fut: Future<Output = crmkit_core::Result<Store>>,
{
    use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::new(format!("tokio runtime: {e}")))?;
    let store = rt.block_on(factory()).at("store factory")?;
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters,
        failure_persistence: None,
        ..Config::default()
    });
    match runner.run(&strategy, |v| {
        rt.block_on(case(&store, v))
            .map_err(|f| TestCaseError::fail(f.message))
    }) {
        Ok(()) => Ok(()),
        Err(TestError::Fail(reason, v)) => Err(Failure::new(format!(
            "{what} failed: {reason}\n  minimal input: {v:#?}"
        ))),
        Err(TestError::Abort(reason)) => Err(Failure::new(format!("{what} aborted: {reason}"))),
    }
}

/// Most writes one command is expected to make in an atomicity check.
pub(crate) const MAX_FAULT_STEPS: usize = 200;

/// Runs `cmd` with a fault injected before its n-th write for n = 0, 1, ... until it
/// succeeds (`what` names it in failures). Every failing run must be a Storage error after
/// which `unchanged(n)` passes; the command must write at least once and succeed within
/// [`MAX_FAULT_STEPS`] writes. Returns the number of failing runs and the result.
pub(crate) async fn fail_at_every_write<T>(
    store: &Store,
    what: &str,
    unchanged: impl AsyncFn(usize) -> CheckResult,
    cmd: impl AsyncFn() -> crmkit_core::Result<T>,
) -> CheckResult<(usize, T)> {
    for n in 0..MAX_FAULT_STEPS {
        store.backend().inject_fault(Some(Fault::FailAtWrite(n)));
        let r = cmd().await;
        store.backend().inject_fault(None);
        match r {
            Ok(v) => {
                ensure!(n > 0, "{what}: succeeded with a fault at write 0");
                return Ok((n, v));
            }
            Err(crmkit_core::Error::Storage { .. }) => unchanged(n).await?,
            Err(e) => {
                return Err(Failure::new(format!(
                    "{what} with a fault at write {n}: expected a Storage error, got {e:?}"
                )));
            }
        }
    }
    Err(Failure::new(format!(
        "{what} still failed with a fault after {MAX_FAULT_STEPS} writes"
    )))
}

/// [`fail_at_every_write`] where every failing run must leave the row counts of `ctx`'s
/// tenant in `tables` as they were before the first run (failures say "`what`: nothing
/// written at write n").
pub(crate) async fn fail_at_every_write_counting<T>(
    store: &Store,
    ctx: &Ctx,
    tables: &[&'static str],
    what: &str,
    cmd: impl AsyncFn() -> crmkit_core::Result<T>,
) -> CheckResult<(usize, T)> {
    let tables = tables.to_vec();
    let before = row_counts(store, ctx, tables.clone()).await?;
    let nothing_written = async |n| {
        ensure_eq!(
            row_counts(store, ctx, tables.clone()).await?,
            before,
            "{what}: nothing written at write {n}"
        );
        Ok(())
    };
    fail_at_every_write(store, what, nothing_written, cmd).await
}
