//! Conformance checks that queries behave the same on every backend for every input
//! (issue 9, item 6): date bounds, NUL bytes, sums beyond 64 bits, phone extensions and
//! the permission messages of the analytics.
//!
//! Every check is an `async fn(&Store) -> CheckResult` over a [`Store`] opened with
//! [`modules`] (core, contacts, pipeline, activities, tickets and [`QueryKitModule`], a
//! small table for storage-contract checks); each makes its own fresh tenant. [`checks`]
//! lists them by name. [`wide_sums_property`] is a sync proptest (it owns a runtime).
//!
//! The rules checked, the same on every backend:
//! - dates are 0001-01-01 to 9999-12-31: a date filter (built-in or custom field) outside
//!   that range, or a `Date` cell or condition value outside it at the storage contract,
//!   is a Validation error naming the field (or column); timestamps compare as integers
//!   and give correct results for any instant;
//! - NUL in a filter value, in stored text, or in a storage-contract value is a
//!   Validation error naming the field, and nothing is written;
//! - `Measure::Sum` is exact for any set of 64-bit values (results past 2^63 come back
//!   as [`Value::sum`]), and the pipeline summary equals the Rust sum of its deals;
//! - a phone number with an extension is a Validation error, never stored without it;
//! - a Rep asking for ticket analytics is told it is the analytics that need the role.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{NaiveDate, TimeZone, Utc};
use crmkit_contacts::{ContactsModule, NewContact, PhoneInput};
use crmkit_core::store::{
    Aggregate, CmpOp, ColumnDef, ColumnType, Cond, Measure, Migration, SchemaStep, Select,
    TableDef, Value, Write,
};
use crmkit_core::{Changeset, CustomValue, Error, Filter, Module, Modules, Money, Query, Store};
use crmkit_pipeline::deal::{Deals, NewDeal, NewPipeline, NewStage};
use proptest::prelude::*;
use rust_decimal::Decimal;

use crate::check::{At, CheckResult, Failure, expect_invalid, expect_validation};
pub use crate::check::{CheckFn, CheckFuture};
use crate::pipeline_deals::deals_with_default;
use crate::pipeline_deals::{all_deals, ids};

/// The storage-contract table of these checks.
pub const ROWS: &str = "qk_rows";

/// A module with one table for storage-contract checks: a date, an integer and a label
/// per row, grouped by `grp`.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryKitModule;

impl Module for QueryKitModule {
    fn name(&self) -> &'static str {
        "qk"
    }

    fn migrations(&self) -> Vec<Migration> {
        use ColumnType::*;
        vec![Migration {
            version: 1,
            description: "rows with a date, an integer and a label",
            steps: vec![SchemaStep::CreateTable(TableDef::new(
                ROWS,
                [
                    ColumnDef::required("id", Uuid),
                    ColumnDef::required("grp", Text(8)),
                    ColumnDef::optional("day", Date),
                    ColumnDef::optional("n", Int),
                    ColumnDef::optional("label", Text(64)),
                ],
                ["id"],
            ))],
        }]
    }
}

/// The modules these checks run with.
pub fn modules() -> crmkit_core::Result<Modules> {
    Modules::builder()
        .add(ContactsModule)
        .add(crmkit_pipeline::PipelineModule)
        .add(crmkit_activities::ActivitiesModule)
        .add(crmkit_tickets::TicketsModule)
        .add(QueryKitModule)
        .build()
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

fn row(grp: &str, day: Option<&str>, n: Option<i64>, label: Option<&str>) -> Vec<Value> {
    vec![
        Value::Uuid(uuid::Uuid::now_v7()),
        Value::Text(grp.into()),
        Value::opt_text(day),
        Value::opt_int(n),
        Value::opt_text(label),
    ]
}

async fn insert_rows(store: &Store, ctx: &crmkit_core::Ctx, rows: Vec<Vec<Value>>) -> CheckResult {
    let mut cs = Changeset::new(ctx);
    for r in rows {
        cs.writes.push(Write::Insert {
            table: ROWS,
            row: r,
        });
    }
    store.backend().commit(cs).await.at("insert qk rows")?;
    Ok(())
}

async fn row_count(store: &Store, ctx: &crmkit_core::Ctx) -> CheckResult<u64> {
    store
        .backend()
        .count(ctx.tenant(), ROWS, &Cond::True)
        .await
        .at("count qk rows")
}

#[track_caller]
fn expect_validation_at<T: fmt::Debug>(
    r: crmkit_core::Result<T>,
    field: &str,
    reason: &str,
    what: &str,
) -> CheckResult {
    match r {
        Err(Error::Validation(v)) if v.has(field) && v.to_string().contains(reason) => Ok(()),
        other => Err(Failure::new(format!(
            "{what}: expected a Validation error naming {field:?} ({reason}), got {other:?}"
        ))),
    }
}

// ---------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------

/// Dates past 9999 or before year 1: `Deals::closing_between`, `Filter` on a deal's
/// `expected_close` (as a date and as text), a contact's custom date field, and the
/// storage contract's `Date` cells and conditions are Validation errors naming the field;
/// the boundary dates 0001-01-01 and 9999-12-31 work; timestamp bounds far outside the
/// date range give the correct result.
pub async fn date_bounds(store: &Store) -> CheckResult {
    let f = crate::contacts::setup(store).await?;
    let (deals, p) = deals_with_default(store, &f.admin).await?;
    let mut n = NewDeal::new("last day", p.id);
    n.expected_close = Some(date(9999, 12, 31));
    let late = deals.create(&f.admin, n.clone()).await.at("late deal")?;
    n.title = "first day".into();
    n.expected_close = Some(date(1, 1, 1));
    let early = deals.create(&f.admin, n.clone()).await.at("early deal")?;
    n.title = "2030".into();
    n.expected_close = Some(date(2030, 6, 1));
    let mid = deals.create(&f.admin, n.clone()).await.at("2030 deal")?;

    // Boundaries are in range and compare correctly.
    let all = deals
        .closing_between(&f.admin, date(1, 1, 1), date(9999, 12, 31), &Query::new())
        .await
        .at("closing over the whole range")?;
    ensure_eq!(
        ids(&all.items),
        ids(&[late.clone(), early.clone(), mid.clone()]),
        "0001-01-01..=9999-12-31 holds every deal"
    );
    let before = all_deals(
        &deals,
        &f.admin,
        &Query::new().filter(Filter::lt("expected_close", date(9999, 12, 31))),
    )
    .await?;
    ensure_eq!(
        ids(&before),
        ids(&[early.clone(), mid.clone()]),
        "before 9999-12-31"
    );

    // Out of range: one Validation error naming the filter field, on every backend.
    let field = "filter.expected_close";
    for (y, what) in [
        (10_000, "year 10000"),
        (-1, "year -1"),
        (0, "year 0"),
        (262_000, "year 262000"),
    ] {
        let d = date(y, 1, 1);
        expect_validation_at(
            deals
                .closing_between(&f.admin, date(2030, 1, 1), d, &Query::new())
                .await,
            field,
            "years 1 and 9999",
            &format!("closing_between up to {what}"),
        )?;
        expect_validation_at(
            deals
                .closing_between(&f.admin, d, date(2030, 1, 1), &Query::new())
                .await,
            field,
            "years 1 and 9999",
            &format!("closing_between from {what}"),
        )?;
        for filter in [
            Filter::lt("expected_close", d),
            Filter::gte("expected_close", d),
            Filter::eq("expected_close", d),
            Filter::is_in("expected_close", [date(2030, 6, 1), d]),
            Filter::lt("expected_close", d).not(),
        ] {
            expect_validation_at(
                deals
                    .list(&f.admin, &Query::new().filter(filter.clone()))
                    .await,
                field,
                "years 1 and 9999",
                &format!("{filter:?}"),
            )?;
        }
    }
    for text in [
        "10000-01-01",
        "+10000-01-01",
        "-0001-01-01",
        "0000-12-31",
        "99999-01-01",
    ] {
        expect_validation(
            deals
                .list(
                    &f.admin,
                    &Query::new().filter(Filter::lt("expected_close", text)),
                )
                .await,
            field,
            &format!("expected_close < {text:?}"),
        )?;
    }
    // Storing such a date is refused too (and writes nothing).
    let count_before = all_deals(&deals, &f.admin, &Query::new()).await?.len();
    n.expected_close = Some(date(10_000, 1, 1));
    expect_validation(
        deals.create(&f.admin, n.clone()).await,
        "expected_close",
        "a deal closing in 10000",
    )?;
    n.expected_close = Some(date(-5, 1, 1));
    expect_validation(
        deals.create(&f.admin, n.clone()).await,
        "expected_close",
        "a deal closing in -5",
    )?;
    ensure_eq!(
        all_deals(&deals, &f.admin, &Query::new()).await?.len(),
        count_before,
        "refused deals are not written"
    );

    // A custom date field (the contact field `since`).
    let mut c = NewContact::named("Ada", "Lovelace");
    c.custom
        .insert("since".into(), CustomValue::Date(date(9999, 12, 31)));
    let ada = f.contacts.create(&f.admin, c.clone()).await.at("ada")?;
    let found = f
        .contacts
        .list(
            &f.admin,
            &Query::new().filter(Filter::gte("custom.since", date(9999, 12, 31))),
        )
        .await
        .at("custom date at the upper bound")?;
    ensure_eq!(
        found.items.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![ada.id],
        "custom.since >= 9999-12-31"
    );
    for d in [date(10_000, 1, 1), date(-1, 12, 31)] {
        expect_validation_at(
            f.contacts
                .list(
                    &f.admin,
                    &Query::new().filter(Filter::lt("custom.since", d)),
                )
                .await,
            "filter.custom.since",
            "years 1 and 9999",
            &format!("custom.since < {d}"),
        )?;
        c.custom.insert("since".into(), CustomValue::Date(d));
        expect_invalid(
            f.contacts.create(&f.admin, c.clone()).await,
            &format!("a custom date {d} is refused on create"),
        )?;
    }

    // Timestamps are integers: bounds far outside the date range are correct, not empty.
    let far_future = Utc
        .with_ymd_and_hms(200_000, 1, 1, 0, 0, 0)
        .single()
        .expect("t");
    let far_past = Utc
        .with_ymd_and_hms(-200_000, 1, 1, 0, 0, 0)
        .single()
        .expect("t");
    let everything = ids(&all_deals(&deals, &f.admin, &Query::new()).await?);
    for (filter, want, what) in [
        (
            Filter::lt("created_at", far_future),
            everything.clone(),
            "created before 200000",
        ),
        (
            Filter::gt("created_at", far_past),
            everything.clone(),
            "created after -200000",
        ),
        (
            Filter::gt("created_at", far_future),
            vec![],
            "created after 200000",
        ),
        (
            Filter::lt("created_at", far_past),
            vec![],
            "created before -200000",
        ),
    ] {
        let got = ids(&all_deals(&deals, &f.admin, &Query::new().filter(filter)).await?);
        ensure_eq!(got, want, "{what}");
    }

    // The storage contract: a Date cell or condition value outside the range, or not in
    // canonical form, is a Validation error naming the column, and nothing is written.
    let b = store.backend();
    insert_rows(
        store,
        &f.admin,
        vec![
            row("d", Some("0001-01-01"), None, None),
            row("d", Some("9999-12-31"), None, None),
        ],
    )
    .await?;
    let before_rows = row_count(store, &f.admin).await?;
    for bad in [
        "10000-01-01",
        "+10000-01-01",
        "-0001-01-01",
        "0000-01-01",
        "2024-1-5",
        "2024-02-30",
        "x",
    ] {
        let mut cs = Changeset::new(&f.admin);
        cs.writes.push(Write::Insert {
            table: ROWS,
            row: row("d", Some("2024-01-01"), None, None),
        });
        cs.writes.push(Write::Insert {
            table: ROWS,
            row: row("d", Some(bad), None, None),
        });
        expect_validation(b.commit(cs).await, "day", &format!("storing day {bad:?}"))?;
        expect_validation(
            b.count(
                f.tenant,
                ROWS,
                &Cond::Cmp("day".into(), CmpOp::Lt, Value::Text(bad.into())),
            )
            .await,
            "day",
            &format!("counting day < {bad:?}"),
        )?;
        expect_validation(
            b.select(
                f.tenant,
                &Select::new(ROWS, Cond::In("day".into(), vec![Value::Text(bad.into())])),
            )
            .await,
            "day",
            &format!("selecting day in [{bad:?}]"),
        )?;
    }
    ensure_eq!(
        row_count(store, &f.admin).await?,
        before_rows,
        "refused changesets write nothing"
    );
    let n_upper = b
        .count(
            f.tenant,
            ROWS,
            &Cond::Cmp("day".into(), CmpOp::Lte, Value::Text("9999-12-31".into())),
        )
        .await
        .at("count up to 9999-12-31")?;
    ensure_eq!(n_upper, 2, "both boundary rows are at most 9999-12-31");
    Ok(())
}

/// NUL bytes: in a filter value (built-in text field, `in`, custom text field, text
/// search) a Validation error naming the filter field; in stored text (a contact's name,
/// a deal's title, a storage-contract cell, key or condition) a Validation error and no
/// write; the same on every backend (PostgreSQL cannot hold NUL in text).
pub async fn nul_bytes(store: &Store) -> CheckResult {
    let f = crate::contacts::setup(store).await?;
    let ada = f.person(&f.admin, "Ada", "Lovelace").await?;
    let list = |filter: Filter| {
        let contacts = f.contacts.clone();
        let ctx = f.admin.clone();
        async move { contacts.list(&ctx, &Query::new().filter(filter)).await }
    };
    for (filter, field) in [
        (Filter::eq("first_name", "Ada\0"), "filter.first_name"),
        (Filter::eq("name", "\0"), "filter.name"),
        (Filter::gt("last_name", "L\0x"), "filter.last_name"),
        (Filter::ne("job_title", "a\0"), "filter.job_title"),
        (Filter::is_in("email", ["a@b.com", "\0"]), "filter.email"),
        (Filter::eq("custom.note", "n\0"), "filter.custom.note"),
        (
            Filter::eq("lifecycle_stage", "lead\0"),
            "filter.lifecycle_stage",
        ),
        (Filter::contains("name", "a\0"), "filter.name"),
        (
            Filter::starts_with("custom.note", "\0"),
            "filter.custom.note",
        ),
        (
            Filter::eq("first_name", "Ada").and(Filter::eq("last_name", "\0").not()),
            "filter.last_name",
        ),
    ] {
        expect_validation(list(filter.clone()).await, field, &format!("{filter:?}"))?;
    }
    // Without the NUL, the same filters work.
    let page = list(Filter::eq("first_name", "Ada"))
        .await
        .at("first_name = Ada")?;
    ensure_eq!(
        page.items.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![ada.id],
        "first_name = Ada"
    );

    // Stored text: refused, nothing written.
    let before = contact_count(&f).await?;
    for (c, field) in [
        (NewContact::named("Gr\0ce", "Hopper"), "first_name"),
        (NewContact::named("Grace", "Hopper\0"), "last_name"),
        (
            {
                let mut c = NewContact::named("Grace", "Hopper");
                c.job_title = Some("Rear\0Admiral".into());
                c
            },
            "job_title",
        ),
    ] {
        expect_validation(
            f.contacts.create(&f.admin, c).await,
            field,
            &format!("a contact with NUL in {field}"),
        )?;
    }
    let (deals, p) = deals_with_default(store, &f.admin).await?;
    expect_invalid(
        deals
            .create(&f.admin, NewDeal::new("big\0deal", p.id))
            .await,
        "a deal title with NUL is a Validation error",
    )?;
    let after = contact_count(&f).await?;
    ensure_eq!(after, before, "refused contacts are not written");

    // The storage contract refuses NUL wherever a value reaches a backend.
    let b = store.backend();
    insert_rows(
        store,
        &f.admin,
        vec![row("t", None, Some(1), Some("plain"))],
    )
    .await?;
    let rows_before = row_count(store, &f.admin).await?;
    let mut cs = Changeset::new(&f.admin);
    cs.writes.push(Write::Insert {
        table: ROWS,
        row: row("t", None, Some(2), Some("fine")),
    });
    cs.writes.push(Write::Insert {
        table: ROWS,
        row: row("t", None, Some(3), Some("nul\0here")),
    });
    expect_validation(b.commit(cs).await, "label", "inserting NUL text")?;
    let mut cs = Changeset::new(&f.admin);
    cs.writes.push(Write::UpdateWhere {
        table: ROWS,
        cond: Cond::eq("grp", "t"),
        set: vec![("label", Value::Text("\0".into()))],
    });
    expect_validation(b.commit(cs).await, "label", "setting NUL text")?;
    ensure_eq!(
        row_count(store, &f.admin).await?,
        rows_before,
        "nothing written"
    );
    let labels = b
        .select(f.tenant, &Select::new(ROWS, Cond::eq("grp", "t")))
        .await
        .at("labels")?;
    ensure!(
        labels.iter().all(|r| r[4] == Value::Text("plain".into())),
        "labels unchanged: {labels:?}"
    );
    for (cond, what) in [
        (Cond::eq("label", "a\0"), "label = NUL"),
        (
            Cond::In("label".into(), vec![Value::Text("\0".into())]),
            "label in [NUL]",
        ),
        (
            Cond::Contains("label".into(), "\0".into()),
            "label contains NUL",
        ),
        (
            Cond::StartsWith("label".into(), "x\0".into()),
            "label starts with NUL",
        ),
        (
            Cond::Or(vec![
                Cond::True,
                Cond::Not(Box::new(Cond::eq("label", "\0"))),
            ]),
            "nested",
        ),
    ] {
        expect_validation(
            b.select(f.tenant, &Select::new(ROWS, cond.clone())).await,
            "label",
            what,
        )?;
        expect_validation(b.count(f.tenant, ROWS, &cond).await, "label", what)?;
        expect_validation(
            b.aggregate(
                f.tenant,
                &Aggregate {
                    table: ROWS,
                    cond: cond.clone(),
                    group_by: vec![],
                    measures: vec![Measure::Count],
                    buckets: None,
                },
            )
            .await,
            "label",
            what,
        )?;
    }
    // A point read whose key holds NUL text (the custom-value table has a text key).
    let values = b
        .schema()
        .table(crmkit_core::custom::VALUES_TABLE)
        .at("custom-value table")?;
    let mut key = vec![];
    let mut nul_column = None;
    for k in &values.primary_key {
        let ty = values.column(k).map(|c| c.ty);
        key.push(match ty {
            Some(ColumnType::Uuid) => Value::Uuid(uuid::Uuid::now_v7()),
            Some(ColumnType::Text(_)) => {
                nul_column.get_or_insert(*k);
                Value::Text("x\0".into())
            }
            _ => Value::Int(0),
        });
    }
    let nul_column = nul_column.ok_or_else(|| Failure::new("no text key column"))?;
    expect_validation(
        b.get(f.tenant, crmkit_core::custom::VALUES_TABLE, &key)
            .await,
        nul_column,
        "a point read with NUL in the key",
    )?;
    Ok(())
}

/// The scenario of the bug report: ten deals of 999,999,999,999 IDR in an open stage at
/// 100% make `weighted_x100` sum past 2^63. The pipeline summary is exact, and every
/// report line equals the Rust sum of the deals it covers (count, open value, weighted
/// value), on every backend.
pub async fn wide_pipeline_summary(store: &Store) -> CheckResult {
    let f = crate::contacts::setup(store).await?;
    let deals = Deals::new(store).at("Deals::new")?;
    let p = deals
        .pipelines()
        .create(
            &f.admin,
            NewPipeline {
                name: "Big".into(),
                currency: None,
                stages: vec![
                    NewStage::open("Sure", 100),
                    NewStage::open("Maybe", 37),
                    NewStage::won("W"),
                    NewStage::lost("L"),
                ],
            },
        )
        .await
        .at("pipeline")?;
    let sure = p.stages[0].id;
    let maybe = p.stages[1].id;
    let idr = |s: &str| Money::parse(s, "IDR").expect("IDR");
    for i in 0..10 {
        let mut n = NewDeal::new(format!("huge {i}"), p.id);
        n.amount = Some(idr("999999999999"));
        n.stage = Some(sure);
        deals.create(&f.admin, n).await.at("huge deal")?;
    }
    for (i, a) in ["999999999999.99", "0.01", "123456789.5"]
        .iter()
        .enumerate()
    {
        let mut n = NewDeal::new(format!("maybe {i}"), p.id);
        n.amount = Some(idr(a));
        n.stage = Some(maybe);
        deals.create(&f.admin, n).await.at("maybe deal")?;
    }
    let mut n = NewDeal::new("euro", p.id);
    n.amount = Some(Money::parse("999999999999.9999", "EUR").expect("EUR"));
    n.stage = Some(sure);
    deals.create(&f.admin, n).await.at("euro deal")?;
    let mut n = NewDeal::new("no amount", p.id);
    n.stage = Some(sure);
    deals.create(&f.admin, n).await.at("deal without amount")?;

    let summary = deals.summary(&f.admin, p.id).await.at("pipeline summary")?;
    let line = |stage, code: Option<&str>| {
        summary
            .lines
            .iter()
            .find(|l| l.stage == stage && l.currency.map(|c| c.code()) == code)
            .cloned()
    };
    let huge = line(sure, Some("IDR")).ok_or_else(|| Failure::new("no Sure/IDR line"))?;
    ensure_eq!(huge.open_deals, 10, "ten huge deals");
    ensure_eq!(
        huge.open_value,
        Decimal::from(9_999_999_999_990i64),
        "exact open value"
    );
    ensure_eq!(
        huge.weighted_value,
        Decimal::from(9_999_999_999_990i64),
        "exact weighted value at 100%"
    );

    // Every line equals the Rust sum of its deals.
    let open = all_deals(
        &deals,
        &f.admin,
        &Query::new().filter(Filter::eq("pipeline", p.id).and(Filter::eq("status", "open"))),
    )
    .await?;
    type Key = (crmkit_core::StageId, Option<String>);
    let mut want: BTreeMap<Key, (u64, Decimal, Decimal)> = BTreeMap::new();
    for d in &open {
        let e = want
            .entry((d.stage, d.amount.map(|m| m.currency().code().to_owned())))
            .or_default();
        e.0 += 1;
        if let Some(m) = d.amount {
            e.1 += m.amount();
            e.2 += m.amount() * Decimal::from(d.probability) / Decimal::from(100);
        }
    }
    let got: BTreeMap<Key, (u64, Decimal, Decimal)> = summary
        .lines
        .iter()
        .map(|l| {
            (
                (l.stage, l.currency.map(|c| c.code().to_owned())),
                (l.open_deals, l.open_value, l.weighted_value),
            )
        })
        .collect();
    let norm = |m: BTreeMap<Key, (u64, Decimal, Decimal)>| {
        m.into_iter()
            .map(|(k, (n, a, w))| (k, (n, a.normalize(), w.normalize())))
            .collect::<BTreeMap<_, _>>()
    };
    ensure_eq!(
        norm(got),
        norm(want),
        "summary lines equal the Rust sums of their deals"
    );
    Ok(())
}

/// Storage-contract sums past 64 bits: rows holding `i64::MAX` and `i64::MIN` and mixes
/// of both; each group's sum equals the exact `i128` sum, comes back as [`Value::sum`]
/// (`Int` within 64 bits, decimal `Text` beyond), and is identical on every backend.
pub async fn wide_sums(store: &Store) -> CheckResult {
    let f = crate::contacts::setup(store).await?;
    let groups: Vec<(&str, Vec<Option<i64>>)> = vec![
        ("max", vec![Some(i64::MAX); 10]),
        ("min", vec![Some(i64::MIN); 10]),
        (
            "mix",
            vec![
                Some(i64::MAX),
                Some(i64::MAX),
                Some(i64::MIN),
                Some(i64::MIN),
                Some(-1),
            ],
        ),
        (
            "back",
            vec![Some(i64::MAX), Some(i64::MAX), Some(i64::MIN + 5), None],
        ),
        ("null", vec![None, None]),
        (
            "small",
            vec![Some(-3), Some(4), Some(-(1 << 32)), Some((1 << 32) + 7)],
        ),
    ];
    let mut rows = vec![];
    for (g, ns) in &groups {
        for n in ns {
            rows.push(row(g, None, *n, None));
        }
    }
    insert_rows(store, &f.admin, rows).await?;
    let agg = Aggregate {
        table: ROWS,
        cond: Cond::True,
        group_by: vec!["grp".into()],
        measures: vec![
            Measure::Sum("n".into()),
            Measure::Count,
            Measure::Sum("n".into()),
        ],
        buckets: None,
    };
    let got = store
        .backend()
        .aggregate(f.tenant, &agg)
        .await
        .at("grouped wide sums")?;
    let mut want: Vec<Vec<Value>> = groups
        .iter()
        .map(|(g, ns)| {
            let total: i128 = ns.iter().flatten().map(|&n| i128::from(n)).sum();
            vec![
                Value::Text((*g).into()),
                Value::sum(total),
                Value::Int(ns.len() as i64),
                Value::sum(total),
            ]
        })
        .collect();
    want.sort();
    ensure_eq!(got, want, "grouped sums are exact past 64 bits");
    let sum_of = |g: &str| {
        got.iter()
            .find(|r| r[0] == Value::Text(g.into()))
            .map(|r| r[1].clone())
    };
    ensure_eq!(
        sum_of("max"),
        Some(Value::Text((i128::from(i64::MAX) * 10).to_string())),
        "ten times i64::MAX is decimal text"
    );
    ensure_eq!(
        sum_of("min"),
        Some(Value::Text((i128::from(i64::MIN) * 10).to_string())),
        "ten times i64::MIN is decimal text"
    );
    ensure_eq!(
        sum_of("mix"),
        Some(Value::Int(-3)),
        "a sum that passes 2^63 and comes back is an Int"
    );
    ensure_eq!(sum_of("null"), Some(Value::Int(0)), "NULLs sum to 0");
    ensure!(
        got.iter().all(|r| r[1].as_sum().is_some()),
        "every sum reads back with as_sum"
    );
    // Ungrouped: the sum of everything.
    let total: i128 = groups
        .iter()
        .flat_map(|(_, ns)| ns.iter().flatten())
        .map(|&n| i128::from(n))
        .sum();
    let all = store
        .backend()
        .aggregate(
            f.tenant,
            &Aggregate {
                table: ROWS,
                cond: Cond::True,
                group_by: vec![],
                measures: vec![Measure::Sum("n".into())],
                buckets: None,
            },
        )
        .await
        .at("total")?;
    ensure_eq!(all, vec![vec![Value::sum(total)]], "the total of every row");
    Ok(())
}

/// How many contacts the admin of `f` lists.
async fn contact_count(f: &crate::contacts::Fixture) -> CheckResult<Option<u64>> {
    let q = Query::new().with_total();
    Ok(f.contacts
        .list(&f.admin, &q)
        .await
        .at("count contacts")?
        .total)
}

/// A phone number with an extension is a Validation error naming the phone (a contact's
/// `phones[i]`), and nothing is written; the main number alone
/// is stored in E.164 and found by the phone lookup.
pub async fn phone_extensions(store: &Store) -> CheckResult {
    let f = crate::contacts::setup(store).await?;
    let before = contact_count(&f).await?;
    for number in [
        "+49 30 901820 ext. 12",
        "+49 30 901820 x12",
        "+1 202-555-0143 extension 7",
    ] {
        expect_validation_at(
            f.contacts
                .create(
                    &f.admin,
                    NewContact::named("Ext", "Ension").phone(PhoneInput::new(number)),
                )
                .await,
            "phones[0]",
            "extension",
            &format!("contact phone {number:?}"),
        )?;
    }
    expect_validation(
        f.contacts
            .create(
                &f.admin,
                NewContact::named("Ext", "Ension").phone(PhoneInput::new("+4930901820;ext=12")),
            )
            .await,
        "phones[0]",
        "an extension form the parser cannot read",
    )?;
    ensure_eq!(
        contact_count(&f).await?,
        before,
        "refused contacts are not written"
    );
    let c = f
        .contacts
        .create(
            &f.admin,
            NewContact::named("Main", "Number").phone(PhoneInput::new("+49 30 901820")),
        )
        .await
        .at("main number")?;
    ensure_eq!(
        c.phones
            .iter()
            .map(|p| p.number.as_str())
            .collect::<Vec<_>>(),
        vec!["+4930901820"],
        "stored in E.164"
    );
    let found = f
        .contacts
        .find_by_phone(&f.admin, "+4930901820")
        .await
        .at("find by phone")?;
    ensure!(
        found.contains(&crmkit_core::RecordRef::from(c.id)),
        "found by its number: {found:?}"
    );
    Ok(())
}

/// Ticket analytics answer a Rep (and a ReadOnly user) over the tickets they see: the
/// backlog, response times and SLA outcomes since issue 11, satisfaction since its rating
/// rows mirror the ticket's scope (tickets migration 4; compared with an oracle in
/// `analytics_service::ticket_reports_scoped` and `tickets_analytics::satisfaction_scoped`),
/// so none of them is refused any more; what stays refused (recomputing SLA state) names
/// the action and the role, not the calendar/SLA-policy message that was once copy-pasted
/// onto satisfaction; an admin gets the analytics.
pub async fn analytics_permission_messages(store: &Store) -> CheckResult {
    let f = crate::contacts::setup(store).await?;
    let tickets = crmkit_tickets::Tickets::new(store).at("Tickets::new")?;
    let from = Utc
        .with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
        .single()
        .expect("t");
    let to = Utc
        .with_ymd_and_hms(2031, 1, 1, 0, 0, 0)
        .single()
        .expect("t");
    for ctx in [&f.rep, &f.readonly] {
        tickets.backlog(ctx).await.at("backlog")?;
        tickets
            .response_times(ctx, from, to)
            .await
            .at("response times")?;
        tickets
            .sla_outcomes(ctx, from, to)
            .await
            .at("SLA outcomes")?;
        let s = tickets
            .satisfaction_stats(ctx, from, to)
            .await
            .at("satisfaction")?;
        ensure_eq!((s.count, s.sum, s.average), (0, 0, None), "no ratings yet");
        match tickets.recompute_sla(ctx, None, None, 10).await {
            Err(Error::PermissionDenied(m))
                if m.contains("recompute SLA")
                    && m.contains("admin or manager")
                    && !m.contains("calendar") => {}
            other => {
                return Err(Failure::new(format!(
                    "recompute_sla by a non-manager: expected PermissionDenied naming the \
                     action and the role, got {other:?}"
                )));
            }
        }
    }
    tickets.backlog(&f.admin).await.at("admin backlog")?;
    tickets
        .response_times(&f.manager, from, to)
        .await
        .at("manager response times")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Property test
// ---------------------------------------------------------------------------------------

async fn wide_sum_case(store: &Store, groups: &[Vec<Option<i64>>]) -> CheckResult {
    let f = crate::contacts::setup(store).await?;
    let mut rows = vec![];
    for (i, ns) in groups.iter().enumerate() {
        for n in ns {
            rows.push(row(&format!("g{i}"), None, *n, None));
        }
    }
    insert_rows(store, &f.admin, rows).await?;
    let got = store
        .backend()
        .aggregate(
            f.tenant,
            &Aggregate {
                table: ROWS,
                cond: Cond::True,
                group_by: vec!["grp".into()],
                measures: vec![Measure::Count, Measure::Sum("n".into())],
                buckets: None,
            },
        )
        .await
        .at("aggregate")?;
    let mut want: Vec<Vec<Value>> = groups
        .iter()
        .enumerate()
        .filter(|(_, ns)| !ns.is_empty())
        .map(|(i, ns)| {
            vec![
                Value::Text(format!("g{i}")),
                Value::Int(ns.len() as i64),
                Value::sum(ns.iter().flatten().map(|&n| i128::from(n)).sum()),
            ]
        })
        .collect();
    want.sort();
    ensure_eq!(got, want, "sums equal the exact i128 sums of the rows");
    Ok(())
}

/// Property: for random groups of 64-bit values biased to the extremes (so sums pass
/// 2^63 either way and come back), every grouped `Measure::Sum` equals the exact `i128`
/// sum of its rows as [`Value::sum`] (proptest, 12 cases).
pub fn wide_sums_property<F, Fut>(factory: F) -> CheckResult
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = crmkit_core::Result<Store>>,
{
    let value = prop_oneof![
        3 => Just(Some(i64::MAX)),
        3 => Just(Some(i64::MIN)),
        2 => (i64::MAX - 1000..=i64::MAX).prop_map(Some),
        2 => (i64::MIN..=i64::MIN + 1000).prop_map(Some),
        3 => any::<i64>().prop_map(Some),
        1 => (-5i64..5).prop_map(Some),
        1 => Just(None),
    ];
    let strategy = proptest::collection::vec(proptest::collection::vec(value, 0..24), 1..4);
    crate::support::run_property("property", factory, strategy, (12, 50), |s, groups| {
        Box::pin(async move { wide_sum_case(s, &groups).await })
    })
}

// ---------------------------------------------------------------------------------------
// The list
// ---------------------------------------------------------------------------------------

suite_checks! {
    /// Every async check of this module by name (the property test is separate, sync).
    names: queries_check_names,
    checks: [
        date_bounds,
        nul_bytes,
        wide_pipeline_summary,
        wide_sums,
        phone_extensions,
        analytics_permission_messages,
    ],
}

/// Runs every async check on `store`.
pub async fn run_all(store: &Store) -> CheckResult {
    for (_, check) in checks() {
        check(store).await?;
    }
    Ok(())
}
