//! The suite catches broken backends: mutants of the in-memory backend, each with a classic
//! bug, must fail the checks aimed at that bug (and the model-based differential test).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use crmkit_core::memory::MemoryBackend;
use crmkit_core::store::{Aggregate, BoxFuture, CmpOp, Cond, Row, Select, Value, Write};
use crmkit_core::{Backend, Changeset, Commit, Result, TenantId};
use crmkit_testkit::delegate_backend;
use crmkit_testkit::storage::{self, Check};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bug {
    /// `select` ignores the keyset position.
    IgnoreAfter,
    /// `a <> v` is true when `a` is NULL (two-valued logic).
    NullNeIsTrue,
    /// Each row write is committed on its own, before the audit rows and events.
    NonAtomic,
}

struct Mutant {
    inner: MemoryBackend,
    bug: Bug,
}

fn mutate(c: &Cond) -> Cond {
    match c {
        Cond::Cmp(col, CmpOp::Ne, v) => Cond::Or(vec![
            Cond::Cmp(col.clone(), CmpOp::Ne, v.clone()),
            Cond::IsNull(col.clone()),
        ]),
        Cond::And(cs) => Cond::And(cs.iter().map(mutate).collect()),
        Cond::Or(cs) => Cond::Or(cs.iter().map(mutate).collect()),
        Cond::Not(c) => Cond::Not(Box::new(mutate(c))),
        other => other.clone(),
    }
}

impl Mutant {
    fn cond(&self, c: &Cond) -> Cond {
        if self.bug == Bug::NullNeIsTrue {
            mutate(c)
        } else {
            c.clone()
        }
    }
}

impl Backend for Mutant {
    delegate_backend!(inner: kind, schema, get, reserve, inject_fault);

    fn select<'a>(
        &'a self,
        tenant: TenantId,
        select: &'a Select,
    ) -> BoxFuture<'a, Result<Vec<Row>>> {
        let mut s = select.clone();
        s.cond = self.cond(&s.cond);
        if self.bug == Bug::IgnoreAfter {
            s.after = None;
        }
        Box::pin(async move { self.inner.select(tenant, &s).await })
    }

    fn count<'a>(
        &'a self,
        tenant: TenantId,
        table: &'a str,
        cond: &'a Cond,
    ) -> BoxFuture<'a, Result<u64>> {
        let c = self.cond(cond);
        Box::pin(async move { self.inner.count(tenant, table, &c).await })
    }

    fn aggregate<'a>(
        &'a self,
        tenant: TenantId,
        agg: &'a Aggregate,
    ) -> BoxFuture<'a, Result<Vec<Row>>> {
        let mut a = agg.clone();
        a.cond = self.cond(&a.cond);
        Box::pin(async move { self.inner.aggregate(tenant, &a).await })
    }

    fn commit(&self, mut changeset: Changeset) -> BoxFuture<'_, Result<Commit>> {
        for w in &mut changeset.writes {
            if let Write::DeleteWhere { cond, .. } = w {
                *cond = self.cond(cond);
            }
        }
        Box::pin(async move {
            if self.bug == Bug::NonAtomic {
                for w in std::mem::take(&mut changeset.writes) {
                    let mut one = changeset.clone();
                    one.writes = vec![w];
                    one.audit.clear();
                    one.events.clear();
                    self.inner.commit(one).await?;
                }
            }
            self.inner.commit(changeset).await
        })
    }
}

fn mutant(bug: Bug) -> Arc<dyn Backend> {
    let modules = storage::modules().expect("kit modules compose");
    Arc::new(Mutant {
        inner: MemoryBackend::new(modules.schema().as_ref().clone()),
        bug,
    })
}

fn check(name: &str) -> Check {
    storage::checks()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}"))
}

/// Whether running `check` on a mutant with `bug` fails (panics or returns an error).
fn caught(bug: Bug, name: &str) -> bool {
    let check = check(name);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| rt.block_on((check.run)(mutant(bug)))));
    !matches!(r, Ok(Ok(())))
}

fn caught_by_model(bug: Bug) -> bool {
    let r = std::panic::catch_unwind(|| {
        storage::model_differential(|| async move { Ok(mutant(bug)) }, 256)
    });
    !matches!(r, Ok(Ok(())))
}

#[test]
fn an_unmodified_memory_backend_passes_through_the_mutant_wrapper() {
    // The wrapper itself is faithful when it injects nothing: guard against a broken
    // self-test by checking that a harmless bug leaves unrelated checks passing.
    assert!(!caught(Bug::IgnoreAfter, "three_valued_logic"));
    assert!(!caught(Bug::NullNeIsTrue, "keyset_paging"));
    assert!(!caught(Bug::NonAtomic, "text_order"));
}

#[test]
fn ignoring_the_keyset_position_is_caught() {
    assert!(caught(Bug::IgnoreAfter, "keyset_paging"));
    assert!(caught(Bug::IgnoreAfter, "custom_fields"));
    assert!(caught_by_model(Bug::IgnoreAfter));
}

#[test]
fn two_valued_logic_is_caught() {
    assert!(caught(Bug::NullNeIsTrue, "three_valued_logic"));
    assert!(caught_by_model(Bug::NullNeIsTrue));
}

#[test]
fn non_atomic_commits_are_caught() {
    assert!(caught(Bug::NonAtomic, "atomicity_under_faults"));
    assert!(caught(Bug::NonAtomic, "unique_and_primary_keys"));
    assert!(caught(Bug::NonAtomic, "versions_and_deletes"));
    assert!(caught_by_model(Bug::NonAtomic));
}

/// A memory backend that never claims a lookup value: every insert into the lookup index
/// is stored without its claim, so the unique index on claims lets duplicates through (a
/// broken unique email claim).
struct ClaimBlind {
    inner: MemoryBackend,
}

impl Backend for ClaimBlind {
    delegate_backend!(
        inner: kind, schema, get, select, count, aggregate, reserve, inject_fault
    );

    fn commit(&self, mut changeset: Changeset) -> BoxFuture<'_, Result<Commit>> {
        for w in &mut changeset.writes {
            if let Write::Insert { table, row } = w
                && *table == crmkit_core::lookup::TABLE
            {
                row[4] = Value::Null;
            }
        }
        self.inner.commit(changeset)
    }
}

/// Whether the contacts check `unique_race` fails on a memory store (claim-blind or not).
fn unique_race_fails(claim_blind: bool) -> bool {
    let modules = crmkit_testkit::contacts::modules().expect("contacts modules compose");
    let inner = MemoryBackend::new(modules.schema().as_ref().clone());
    let backend: Arc<dyn Backend> = if claim_blind {
        Arc::new(ClaimBlind { inner })
    } else {
        Arc::new(inner)
    };
    let store = crmkit_core::Store::from_arc(backend, modules);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
        rt.block_on(crmkit_testkit::contacts::unique_race(&store))
    }));
    !matches!(r, Ok(Ok(())))
}

#[test]
fn a_broken_unique_claim_is_caught_on_the_memory_backend() {
    // The racers all pass the duplicate pre-check before any commits, so only the claim
    // keeps the losers out: without it, several contacts get the email.
    assert!(
        !unique_race_fails(false),
        "unique_race passes on a sound backend"
    );
    assert!(
        unique_race_fails(true),
        "unique_race catches a claim-blind backend"
    );
}
