//! The generic record API against the typed one, on a SQLite file: a get and a patch by
//! kind name (`crm.records()`, JSON values) next to the same call through the typed
//! contacts API. The generic path checks the body against the kind's description, turns
//! it into the typed input, runs the typed command and serialises the record to JSON; the
//! ratio is what that costs. The generic side's result is a `Record`: the record's JSON
//! text, ready to be written out (what an HTTP API returns), with its fields parsed only
//! when read; the typed side returns the `Contact` and produces no JSON. Target: <= 1.2
//! for both. Measured (three runs, load average 3-4): get 1.22-1.23 (about 6.0 µs against
//! 4.9 µs; 1.31-1.33 before the records' timestamps were written on the stack), not met;
//! get + patch 1.13-1.14. What the remaining gap is: ARCHITECTURE.md, the records bench.
//!
//! Sizes: `CRMKIT_BENCH_RECORDS` contacts in the file (default 10 000), 1000 gets and 200
//! patches per iteration.

mod common;

use std::sync::LazyLock;

use common::{Line, block_on};
use crmkit::contacts::{ContactPatch, NewContact};
use crmkit::{ContactId, Crm, Ctx};
use divan::Bencher;

fn contacts_n() -> usize {
    common::size("CRMKIT_BENCH_RECORDS", 10_000, 200)
}

struct Setup {
    _db: common::TempDb,
    crm: Crm,
    ctx: Ctx,
    ids: Vec<ContactId>,
}

static SETUP: LazyLock<Setup> = LazyLock::new(|| {
    let db = common::TempDb::new("records");
    let crm = db.open();
    let (ctx, owners) = block_on(common::tenant(&crm, 4));
    let rows: Vec<NewContact> = (0..contacts_n())
        .map(|i| {
            let mut c = NewContact::named(format!("First{i}"), format!("Last{i}"))
                .email(format!("person{i}@example.com"));
            c.owner = Some(owners[i % owners.len()]);
            c.job_title = Some("Engineer".into());
            c
        })
        .collect();
    let report = block_on(crm.contacts().import(
        &ctx,
        rows,
        crmkit::contacts::ImportOptions::default(),
    ))
    .expect("import");
    let ids = (0..1000)
        .map(|i| report.created[(i * 7919) % report.created.len()])
        .collect();
    Setup {
        _db: db,
        crm,
        ctx,
        ids,
    }
});

fn get_typed(s: &Setup) -> impl FnMut() + '_ {
    let contacts = s.crm.contacts();
    move || {
        block_on(async {
            for id in &s.ids {
                divan::black_box(contacts.get(&s.ctx, *id).await.unwrap());
            }
        })
    }
}

fn get_generic(s: &Setup) -> impl FnMut() + '_ {
    let records = s.crm.records();
    move || {
        block_on(async {
            for id in &s.ids {
                divan::black_box(records.get(&s.ctx, "contact", id.as_uuid()).await.unwrap());
            }
        })
    }
}

mod get_by_id {
    use super::*;

    /// 1000 gets per iteration, both sides interleaved.
    #[divan::bench(sample_count = 41, sample_size = 1)]
    fn pair(b: Bencher) {
        let s = &*SETUP;
        common::interleaved(
            b,
            s.ids.len() as u32,
            ("get/generic", get_generic(s)),
            ("get/typed", get_typed(s)),
        );
    }
}

/// Patches per iteration (each one commit).
const PATCHES: usize = 200;

/// The next job title for a contact (alternating, so every patch changes something).
fn title(round: usize) -> String {
    format!("Engineer {}", round % 2)
}

fn patch_typed(s: &Setup, ids: &[ContactId], round: &mut usize) {
    let contacts = s.crm.contacts();
    *round += 1;
    block_on(async {
        for id in ids {
            let c = contacts.get(&s.ctx, *id).await.unwrap();
            let patch = ContactPatch {
                job_title: Some(Some(title(*round))),
                ..Default::default()
            };
            divan::black_box(
                contacts
                    .update(&s.ctx, *id, c.version, patch)
                    .await
                    .unwrap(),
            );
        }
    })
}

fn patch_generic(s: &Setup, ids: &[ContactId], round: &mut usize) {
    let records = s.crm.records();
    *round += 1;
    block_on(async {
        for id in ids {
            let c = records.get(&s.ctx, "contact", id.as_uuid()).await.unwrap();
            let v = c.version().unwrap();
            divan::black_box(
                records
                    .patch(
                        &s.ctx,
                        "contact",
                        id.as_uuid(),
                        v,
                        serde_json::json!({ "job_title": title(*round) }),
                    )
                    .await
                    .unwrap(),
            );
        }
    })
}

mod patch {
    use super::*;

    /// A get and a patch (one commit) per contact, 200 contacts per side per iteration,
    /// on disjoint contacts so that neither side's writes grow the other's rows.
    #[divan::bench(sample_count = 15, sample_size = 1)]
    fn pair(b: Bencher) {
        let s = &*SETUP;
        let n = PATCHES.min(s.ids.len() / 2);
        let (a, bb) = s.ids.split_at(n);
        let bb = &bb[..n];
        let (mut ra, mut rb) = (0, 0);
        common::interleaved(
            b,
            n as u32,
            ("patch/generic", || patch_generic(s, a, &mut ra)),
            ("patch/typed", || patch_typed(s, bb, &mut rb)),
        );
    }
}

fn main() {
    common::main("records", || {
        vec![
            Line::new(
                "get a contact by kind name vs typed (per call)",
                "get/generic",
                "get/typed",
                "typed contacts().get",
                "<= 1.2",
            ),
            Line::new(
                "get + patch a contact by kind name vs typed (per contact, one commit)",
                "patch/generic",
                "patch/typed",
                "typed contacts().get + update",
                "<= 1.2",
            ),
        ]
    });
}
