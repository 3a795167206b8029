//! Conformance checks of campaigns and currencies (`crmkit_pipeline::campaign`,
//! `crmkit_pipeline::currency`) on any backend.
//!
//! Every check is an `async fn(&Store) -> CheckResult` over a store composed by
//! [`modules`] (core, contacts, pipeline). Each check makes its own fresh tenant with
//! [`crate::contacts::setup`] (users in every role, two teams), so checks can share a
//! database. [`checks`] lists them by name.
//!
//! The ROI check ([`roi_inputs`]) writes deal and lead rows straight into the deal and lead
//! tables (filling the columns it relies on and neutral values elsewhere), because the ROI
//! inputs are aggregates over those tables.
//!
//! [`atomicity`] injects faults into the backend: do not run it concurrently with other
//! checks on the same store.

use crate::check::{At, CheckResult, Failure, expect_validation, validation_reasons};
pub use crate::check::{CheckFn, CheckFuture};
use crate::contacts::UnreachableContacts;
use crate::support::all_pages;
use std::collections::BTreeMap;
use std::fmt;

use chrono::NaiveDate;
use crmkit_contacts::NewContact;
use crmkit_core::store::{ColumnType, Row, TableDef, Value, Write};
use crmkit_core::{
    Changeset, Ctx, Currency, CustomFieldDef, CustomFieldType, CustomValue, Error, Filter, Modules,
    Money, Query, RecordKind, RecordRef, Store, TenantId,
};
use crmkit_pipeline::campaign::{
    AttributedDeals, Campaign, CampaignKind, CampaignMember, CampaignPatch, CampaignStatus,
    Campaigns, CurrencyTotal, DEAL_TABLE, LEAD_TABLE, MemberStatus, NewCampaign,
};
use crmkit_pipeline::currency::{Currencies, convert_with};
use crmkit_pipeline::lead::{Leads, NewLead};
use rust_decimal::Decimal;
use uuid::Uuid;

pub use crate::contacts::{Fixture, error_variant, setup};

#[track_caller]
fn expect_variant<T: fmt::Debug>(
    r: crmkit_core::Result<T>,
    variant: &str,
    what: &str,
) -> CheckResult {
    match r {
        Err(e) if error_variant(&e).starts_with(variant) => Ok(()),
        other => Err(Failure::new(format!(
            "{what}: expected {variant}, got {other:?}"
        ))),
    }
}

// ---------------------------------------------------------------------------------------
// Composition
// ---------------------------------------------------------------------------------------

/// The composition the suite runs on: core, contacts and pipeline.
pub fn modules() -> crmkit_core::Result<Modules> {
    crate::pipeline_leads::modules()
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn cur(code: &str) -> CheckResult<Currency> {
    Currency::parse(code).at("currency")
}

fn money(amount: &str, code: &str) -> CheckResult<Money> {
    Money::parse(amount, code).at("money")
}

fn dec(s: &str) -> CheckResult<Decimal> {
    Decimal::from_str_exact(s).map_err(|e| Failure::new(format!("decimal {s}: {e}")))
}

fn day(y: i32, m: u32, d: u32) -> CheckResult<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, d).ok_or_else(|| Failure::new("bad date"))
}

fn apis(f: &Fixture) -> CheckResult<(Campaigns, Currencies)> {
    Ok((
        Campaigns::new(&f.store).at("Campaigns::new")?,
        Currencies::new(&f.store).at("Currencies::new")?,
    ))
}

async fn all_campaigns(c: &Campaigns, ctx: &Ctx, q: &Query) -> CheckResult<Vec<Campaign>> {
    all_pages(
        q,
        "list campaigns",
        |q| async move { c.list(ctx, &q).await },
    )
    .await
}

async fn all_members(
    c: &Campaigns,
    ctx: &Ctx,
    id: crmkit_core::CampaignId,
    limit: u32,
) -> CheckResult<Vec<CampaignMember>> {
    let mut q = Query::new().limit(limit);
    let mut out = vec![];
    for _ in 0..10_000 {
        let page = c.list_members(ctx, id, &q).await.at("list members")?;
        ensure!(page.items.len() <= limit as usize, "page larger than limit");
        out.extend(page.items);
        match page.next_cursor {
            Some(cur) => q.cursor = Some(cur),
            None => return Ok(out),
        }
    }
    Err(Failure::new("member paging did not end"))
}

fn full_campaign(f: &Fixture) -> CheckResult<NewCampaign> {
    Ok(NewCampaign {
        name: "Spring launch 'OR 1=1-- émoji 🎉".into(),
        kind: CampaignKind::Webinar,
        status: CampaignStatus::Planned,
        start_date: Some(day(2024, 2, 29)?),
        end_date: Some(day(2024, 3, 31)?),
        budget: Some(money("12500.50", "EUR")?),
        actual_cost: Some(money("99.9999", "EUR")?),
        expected_revenue: Some(money("100000", "USD")?),
        description: Some("<script>alert(1)</script>".into()),
        owner: None,
        team: Some(f.team_x),
        custom: BTreeMap::from([("channel".to_string(), CustomValue::Choice("paid".into()))]),
    })
}

async fn define_campaign_fields(f: &Fixture) -> CheckResult {
    f.store
        .custom_fields()
        .define(
            &f.admin,
            CustomFieldDef {
                id: crmkit_core::CustomFieldId::new(),
                record_kind: RecordKind::new("campaign"),
                key: "channel".into(),
                label: "Channel".into(),
                ty: CustomFieldType::SingleChoice {
                    choices: vec!["paid".into(), "organic".into()],
                },
                required: false,
            },
        )
        .await
        .at("define campaign field")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------

/// Create, get, update (versioned, audited per field, one event), status transitions,
/// delete and restore, list with filters and custom fields.
pub async fn campaign_crud(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    define_campaign_fields(&f).await?;
    let (c, _) = apis(&f)?;
    let seq0 = f.last_seq().await?;
    let input = full_campaign(&f)?;
    let created = c.create(&f.rep, input.clone()).await.at("create")?;
    ensure_eq!(created.version, 1, "new version");
    ensure_eq!(created.name, input.name, "name byte-exact");
    ensure_eq!(
        c.get(&f.rep, created.id).await.at("get")?,
        created,
        "round trip"
    );
    let ev = f.events_after(seq0).await?;
    ensure_eq!(
        ev.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        vec!["campaign.created"],
        "one created event"
    );

    // Versioned patch.
    let patch = CampaignPatch {
        status: Some(CampaignStatus::Active),
        actual_cost: Some(Some(money("5000", "EUR")?)),
        end_date: Some(Some(day(2024, 4, 30)?)),
        ..Default::default()
    };
    let seq1 = f.last_seq().await?;
    let updated = c
        .update(&f.rep, created.id, 1, patch.clone())
        .await
        .at("update")?;
    ensure_eq!(updated.version, 2, "version bump");
    ensure_eq!(updated.status, CampaignStatus::Active, "status");
    let ev = f.events_after(seq1).await?;
    ensure_eq!(ev.len(), 1, "one update event");
    let mut changed = ev[0].changed.clone();
    changed.sort();
    ensure_eq!(
        changed,
        vec!["actual_cost", "end_date", "status"],
        "changed fields"
    );
    let audit = c.audit(&f.rep, created.id).await.at("audit")?;
    ensure_eq!(audit.len(), 4, "created + three fields");
    expect_variant(
        c.update(&f.rep, created.id, 1, patch.clone()).await,
        "Conflict(1->2)",
        "stale version",
    )?;
    // A patch that changes nothing writes nothing.
    let seq2 = f.last_seq().await?;
    let same = c
        .update(&f.rep, created.id, 2, patch)
        .await
        .at("no-op update")?;
    ensure_eq!(same.version, 2, "no-op keeps version");
    ensure_eq!(f.last_seq().await?, seq2, "no-op writes no event");

    // Transitions.
    let paused = c
        .update(
            &f.rep,
            created.id,
            2,
            CampaignPatch::default().status(CampaignStatus::Paused),
        )
        .await
        .at("pause")?;
    let done = c
        .update(
            &f.rep,
            created.id,
            paused.version,
            CampaignPatch::default().status(CampaignStatus::Completed),
        )
        .await
        .at("complete")?;
    for next in [
        CampaignStatus::Active,
        CampaignStatus::Planned,
        CampaignStatus::Cancelled,
    ] {
        expect_variant(
            c.update(
                &f.rep,
                created.id,
                done.version,
                CampaignPatch::default().status(next),
            )
            .await,
            "InvalidTransition",
            "leaving completed",
        )?;
    }
    let planned = c
        .create(&f.rep, NewCampaign::named("Planned", CampaignKind::Email))
        .await
        .at("create planned")?;
    expect_variant(
        c.update(
            &f.rep,
            planned.id,
            1,
            CampaignPatch::default().status(CampaignStatus::Completed),
        )
        .await,
        "InvalidTransition",
        "planned -> completed",
    )?;

    // Delete and restore.
    let deleted = c.delete(&f.rep, planned.id, 1).await.at("delete")?;
    expect_variant(
        c.get(&f.rep, planned.id).await,
        "NotFound(campaign)",
        "get deleted",
    )?;
    let live = all_campaigns(&c, &f.admin, &Query::new()).await?;
    ensure!(
        !live.iter().any(|x| x.id == planned.id),
        "deleted campaign listed"
    );
    let with_deleted = all_campaigns(&c, &f.admin, &Query::new().include_deleted()).await?;
    ensure!(
        with_deleted.iter().any(|x| x.id == planned.id),
        "include_deleted lists it"
    );
    let restored = c
        .restore(&f.rep, planned.id, deleted.version)
        .await
        .at("restore")?;
    ensure_eq!(restored.deleted_at, None, "restored");
    ensure_eq!(restored.version, 3, "delete and restore bump the version");

    // Filters, sort, custom fields.
    let by_status = all_campaigns(
        &c,
        &f.admin,
        &Query::new().filter(Filter::eq("status", "completed")),
    )
    .await?;
    ensure_eq!(
        by_status.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![created.id],
        "filter by status"
    );
    let by_custom = all_campaigns(
        &c,
        &f.admin,
        &Query::new().filter(Filter::eq("custom.channel", "paid")),
    )
    .await?;
    ensure_eq!(by_custom.len(), 1, "filter by custom field");
    let by_name = all_campaigns(
        &c,
        &f.admin,
        &Query::new()
            .filter(Filter::contains("name", "SPRING"))
            .sort_desc("start_date")
            .limit(1),
    )
    .await?;
    ensure_eq!(by_name.len(), 1, "contains on name, ignoring case");
    expect_validation(
        c.list(&f.admin, &Query::new().sort_asc("budget; DROP TABLE x"))
            .await,
        "sort.budget; DROP TABLE x",
        "unknown sort field",
    )?;
    Ok(())
}

/// Every bad input is a Validation error naming the field and writes nothing.
pub async fn bad_input(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    define_campaign_fields(&f).await?;
    let (c, x) = apis(&f)?;
    let a = &f.admin;
    let d = day(2024, 1, 1)?;
    // Rates before a base currency.
    let before = f.rows_and_seq().await?;
    expect_validation(
        x.set_rate(a, cur("USD")?, d, dec("1.1")?).await,
        "base_currency",
        "rate without a base currency",
    )?;
    expect_variant(
        x.convert(a, money("1", "USD")?, d).await,
        "NotFound(currency_settings)",
        "convert without a base",
    )?;
    ensure_eq!(f.rows_and_seq().await?, before, "nothing written");
    x.set_base_currency(a, cur("EUR")?).await.at("set base")?;

    let before = f.rows_and_seq().await?;
    for (rate, what) in [
        ("0", "zero rate"),
        ("-1.5", "negative rate"),
        ("-0.000000000001", "tiny negative rate"),
        ("0.0000000000001", "13 fractional digits"),
        ("1.1234567890123", "13 fractional digits"),
        ("1000000000000", "too large"),
    ] {
        expect_validation(
            x.set_rate(a, cur("USD")?, d, dec(rate)?).await,
            "rate",
            what,
        )?;
    }
    for code in ["XXY", "usd'; --", "", "EURO", "U\0S"] {
        expect_validation(
            x.set_rate_code(a, code, d, dec("1.1")?).await,
            "currency",
            "unknown currency",
        )?;
    }
    // Every bad field at once.
    match x.set_rate_code(a, "XXY", d, Decimal::ZERO).await {
        Err(Error::Validation(v)) if v.has("currency") && v.has("rate") => {}
        other => return Err(Failure::new(format!("both fields: {other:?}"))),
    }
    expect_validation(
        x.set_rate(a, cur("EUR")?, d, Decimal::ONE).await,
        "currency",
        "rate of the base currency",
    )?;
    expect_variant(
        x.set_rate(&f.rep, cur("USD")?, d, Decimal::ONE).await,
        "PermissionDenied",
        "rep sets a rate",
    )?;
    expect_variant(
        x.set_base_currency(&f.manager, cur("USD")?).await,
        "PermissionDenied",
        "manager sets the base",
    )?;
    expect_variant(
        x.rate_at(a, cur("USD")?, d).await,
        "NotFound(exchange_rate)",
        "no rate",
    )?;

    // Campaigns.
    let ok = full_campaign(&f)?;
    let cases: Vec<(NewCampaign, &str, &str)> = vec![
        (
            NewCampaign {
                end_date: Some(day(2024, 2, 28)?),
                ..ok.clone()
            },
            "end_date",
            "end before start",
        ),
        (
            NewCampaign {
                budget: Some(money("-0.01", "EUR")?),
                ..ok.clone()
            },
            "budget",
            "negative budget",
        ),
        (
            NewCampaign {
                actual_cost: Some(money("-1", "EUR")?),
                ..ok.clone()
            },
            "actual_cost",
            "negative cost",
        ),
        (
            NewCampaign {
                expected_revenue: Some(money("-1", "USD")?),
                ..ok.clone()
            },
            "expected_revenue",
            "negative expected revenue",
        ),
        (
            NewCampaign {
                actual_cost: Some(money("10", "USD")?),
                ..ok.clone()
            },
            "actual_cost",
            "budget/cost currency mismatch",
        ),
        (
            NewCampaign {
                name: "   ".into(),
                ..ok.clone()
            },
            "name",
            "blank name",
        ),
        (
            NewCampaign {
                name: "x".repeat(201),
                ..ok.clone()
            },
            "name",
            "long name",
        ),
        (
            NewCampaign {
                name: "nul\0".into(),
                ..ok.clone()
            },
            "name",
            "NUL in name",
        ),
        (
            NewCampaign {
                start_date: Some(day(10000, 1, 1)?),
                end_date: None,
                ..ok.clone()
            },
            "start_date",
            "year 10000",
        ),
        (
            NewCampaign {
                custom: BTreeMap::from([("channel".to_string(), CustomValue::Choice("tv".into()))]),
                ..ok.clone()
            },
            "custom.channel",
            "bad choice",
        ),
        (
            NewCampaign {
                owner: Some(crmkit_core::UserId::new()),
                ..ok.clone()
            },
            "owner",
            "unknown owner",
        ),
        (
            NewCampaign {
                team: Some(crmkit_core::TeamId::new()),
                ..ok.clone()
            },
            "team",
            "unknown team",
        ),
    ];
    for (input, field, what) in cases {
        expect_validation(c.create(a, input).await, field, what)?;
    }
    // Several bad fields at once.
    match c
        .create(
            a,
            NewCampaign {
                name: String::new(),
                end_date: Some(day(2024, 1, 1)?),
                budget: Some(money("-5", "EUR")?),
                ..ok.clone()
            },
        )
        .await
    {
        Err(Error::Validation(v)) if v.has("name") && v.has("end_date") && v.has("budget") => {}
        other => return Err(Failure::new(format!("every bad field: {other:?}"))),
    }
    expect_variant(
        c.create(
            &f.rep,
            NewCampaign {
                owner: Some(crmkit_core::UserId::new()),
                ..ok.clone()
            },
        )
        .await,
        "PermissionDenied",
        "rep gives a campaign away",
    )?;
    expect_variant(
        c.create(&f.readonly, ok.clone()).await,
        "PermissionDenied",
        "read-only creates",
    )?;
    // Updates too.
    let good = c.create(a, ok.clone()).await.at("create")?;
    let before_update = f.rows_and_seq().await?;
    expect_validation(
        c.update(
            a,
            good.id,
            1,
            CampaignPatch {
                start_date: Some(Some(day(2025, 1, 1)?)),
                ..Default::default()
            },
        )
        .await,
        "end_date",
        "update makes end before start",
    )?;
    expect_validation(
        c.update(
            a,
            good.id,
            1,
            CampaignPatch {
                budget: Some(Some(money("1", "GBP")?)),
                ..Default::default()
            },
        )
        .await,
        "actual_cost",
        "update makes a currency mismatch",
    )?;
    ensure_eq!(
        f.rows_and_seq().await?,
        before_update,
        "failed updates write nothing"
    );
    let (rows, seq) = before;
    let (rows_now, _) = f.rows_and_seq().await?;
    ensure!(seq < f.last_seq().await?, "the good create wrote an event");
    for (t, n) in rows {
        if t != crmkit_pipeline::campaign::CAMPAIGN_TABLE
            && t != crmkit_core::event::EVENTS_TABLE
            && t != crmkit_core::event::AUDIT_TABLE
            && t != crmkit_core::event::SEQUENCES_TABLE
            && t != crmkit_core::custom::VALUES_TABLE
        {
            ensure_eq!(rows_now.get(t).copied(), Some(n), "rows of {t}");
        }
    }
    Ok(())
}

/// The rate for a date is the latest with `effective_from` on or before it: checked
/// against a brute-force scan over every day of a range; replacing a rate is versioned.
pub async fn rates_by_date(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let (_, x) = apis(&f)?;
    let a = &f.admin;
    x.set_base_currency(a, cur("EUR")?).await.at("base")?;
    let usd = cur("USD")?;
    let jpy = cur("JPY")?;
    let mut model: BTreeMap<(Currency, NaiveDate), Decimal> = BTreeMap::new();
    // Pseudo-random dates and rates (fixed seed: identical on every backend).
    let start = day(2023, 12, 1)?;
    let mut s: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..24 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let c = if i % 3 == 0 { jpy } else { usd };
        let date = start + chrono::Duration::days((s % 120) as i64);
        let rate = Decimal::new((s % 1_000_000_000_000) as i64 + 1, (s % 12) as u32 + 1);
        let r = x.set_rate(a, c, date, rate).await.at("set rate")?;
        ensure_eq!(r.rate, rate.normalize(), "stored rate normalised");
        model.insert((c, date), rate.normalize());
    }
    for c in [usd, jpy] {
        for offset in 0..140 {
            let date = start + chrono::Duration::days(offset - 5);
            let expected = model
                .iter()
                .filter(|((mc, md), _)| *mc == c && *md <= date)
                .max_by_key(|((_, md), _)| *md)
                .map(|(_, r)| *r);
            match (x.rate_at(a, c, date).await, expected) {
                (Ok(r), Some(e)) => ensure_eq!(r.rate, e, "rate of {c} on {date}"),
                (Err(Error::NotFound { .. }), None) => {}
                (got, e) => {
                    return Err(Failure::new(format!(
                        "rate of {c} on {date}: got {got:?}, expected {e:?}"
                    )));
                }
            }
        }
        let listed = x.rates(a, c).await.at("rates")?;
        ensure_eq!(
            listed
                .iter()
                .map(|r| (r.effective_from, r.rate))
                .collect::<Vec<_>>(),
            model
                .iter()
                .filter(|((mc, _), _)| *mc == c)
                .map(|((_, d), r)| (*d, *r))
                .collect::<Vec<_>>(),
            "rates of {c}"
        );
    }
    // Replacing a rate: a new version, audited, one event; the same rate is a no-op.
    let d = day(2024, 6, 1)?;
    let first = x.set_rate(a, usd, d, dec("1.10")?).await.at("set")?;
    let seq = f.last_seq().await?;
    let again = x.set_rate(a, usd, d, dec("1.1000")?).await.at("same")?;
    ensure_eq!(again, first, "same rate again");
    ensure_eq!(f.last_seq().await?, seq, "same rate writes nothing");
    let second = x.set_rate(a, usd, d, dec("1.2")?).await.at("replace")?;
    ensure_eq!(second.version, 2, "replaced rate version");
    ensure_eq!(second.id, first.id, "same rate record");
    let audit = f
        .store
        .audit_unchecked(a, &RecordRef::from(first.id))
        .await
        .at("audit")?;
    ensure_eq!(
        audit
            .iter()
            .map(|e| (e.change.old.clone(), e.change.new.clone()))
            .collect::<Vec<_>>(),
        vec![
            (None, Some("\"1.1\"".to_string())),
            (Some("\"1.1\"".to_string()), Some("\"1.2\"".to_string()))
        ],
        "rate audit"
    );
    ensure_eq!(
        x.rate_at(a, usd, d).await.at("rate_at")?.rate,
        dec("1.2")?,
        "replaced rate applies"
    );
    Ok(())
}

/// Conversion is exact and identical on every backend: large amounts, rates with twelve
/// fractional digits, half-to-even ties, currencies without minor units.
pub async fn conversion_exactness(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let (_, x) = apis(&f)?;
    let a = &f.admin;
    x.set_base_currency(a, cur("EUR")?).await.at("base")?;
    let d = day(2024, 1, 1)?;
    let cases = [
        // (amount, currency, rate, expected in EUR)
        ("1.25", "USD", "0.5", "0.62"),
        ("1.35", "USD", "0.5", "0.68"),
        ("-1.25", "USD", "0.5", "-0.62"),
        (
            "922337203685477.5807",
            "GBP",
            "0.999999999999",
            "922337203684555.24",
        ),
        ("0.0001", "CHF", "123456.789012345678", "12.35"),
        ("100", "JPY", "0.006172839506", "0.62"),
        ("123456789.1234", "SEK", "0.087654321098", "10821521.04"),
        ("0.005", "NOK", "1", "0.00"),
        ("0.015", "NOK", "1", "0.02"),
    ];
    let mut rates: BTreeMap<&str, &str> = BTreeMap::new();
    for (amount, code, rate, expected) in cases {
        if rates.get(code) != Some(&rate) {
            x.set_rate(a, cur(code)?, d, dec(rate)?).await.at("rate")?;
        }
        rates.insert(code, rate);
        let m = money(amount, code)?;
        let got = x.convert(a, m, d).await.at("convert")?;
        ensure_eq!(got, money(expected, "EUR")?, "{amount} {code} at {rate}");
        ensure_eq!(
            got,
            convert_with(m, cur("EUR")?, dec(rate)?).at("pure")?,
            "same as the pure conversion"
        );
        let twice = x.convert(a, m, d).await.at("convert again")?;
        ensure_eq!(twice, got, "deterministic");
    }
    // Identity.
    let eur = money("922337203685477.5807", "EUR")?;
    ensure_eq!(
        x.convert(a, eur, d).await.at("identity")?,
        eur,
        "base to base"
    );
    // A base currency without minor units.
    let f2 = setup(store).await?;
    let (_, x2) = apis(&f2)?;
    x2.set_base_currency(&f2.admin, cur("JPY")?)
        .await
        .at("JPY base")?;
    x2.set_rate(&f2.admin, cur("EUR")?, d, dec("162.5")?)
        .await
        .at("EUR rate")?;
    for (amount, expected) in [("1", "162"), ("3", "488"), ("0.01", "2"), ("0.02", "3")] {
        ensure_eq!(
            x2.convert(&f2.admin, money(amount, "EUR")?, d)
                .await
                .at("to JPY")?,
            money(expected, "JPY")?,
            "{amount} EUR in JPY"
        );
    }
    // Too large to store is a Validation error, not a wrong number.
    x2.set_rate(&f2.admin, cur("USD")?, d, dec("150")?)
        .await
        .at("USD rate")?;
    expect_validation(
        x2.convert(&f2.admin, money("922337203685477", "USD")?, d)
            .await,
        "amount",
        "overflowing conversion",
    )?;
    Ok(())
}

/// Changing the base currency: rates against the old base stop applying; new rates apply;
/// the change is audited and emits an event; setting the same base is a no-op.
pub async fn base_currency_changes(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let (_, x) = apis(&f)?;
    let a = &f.admin;
    ensure_eq!(
        x.base_currency(a).await.at("base")?,
        None,
        "no base at first"
    );
    x.set_base_currency(a, cur("EUR")?).await.at("EUR")?;
    ensure_eq!(
        x.base_currency(&f.readonly).await.at("base")?,
        Some(cur("EUR")?),
        "anyone reads the base"
    );
    let d = day(2024, 5, 1)?;
    x.set_rate(a, cur("USD")?, d, dec("0.9")?).await.at("USD")?;
    ensure_eq!(
        x.convert(a, money("10", "USD")?, d).await.at("convert")?,
        money("9", "EUR")?,
        "USD in EUR"
    );
    let seq = f.last_seq().await?;
    x.set_base_currency(a, cur("EUR")?).await.at("same base")?;
    ensure_eq!(f.last_seq().await?, seq, "same base writes nothing");
    x.set_base_currency(a, cur("USD")?).await.at("USD base")?;
    let ev = f.events_after(seq).await?;
    ensure_eq!(
        ev.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        vec!["currency.base_set"],
        "one event"
    );
    ensure_eq!(
        x.convert(a, money("10", "USD")?, d).await.at("identity")?,
        money("10", "USD")?,
        "the new base converts to itself"
    );
    expect_variant(
        x.convert(a, money("10", "EUR")?, d).await,
        "NotFound(exchange_rate)",
        "no EUR rate against USD yet",
    )?;
    x.set_rate(a, cur("EUR")?, d, dec("1.08")?)
        .await
        .at("EUR")?;
    ensure_eq!(
        x.convert(a, money("10", "EUR")?, d).await.at("convert")?,
        money("10.8", "USD")?,
        "EUR in USD"
    );
    expect_validation(
        x.set_rate(a, cur("USD")?, d, dec("1")?).await,
        "currency",
        "the new base has no rate",
    )?;
    // Back to EUR: the old rates apply again.
    x.set_base_currency(a, cur("EUR")?).await.at("back")?;
    ensure_eq!(
        x.convert(a, money("10", "USD")?, d).await.at("convert")?,
        money("9", "EUR")?,
        "old rates apply again"
    );
    let audit = f
        .store
        .audit_unchecked(
            a,
            &RecordRef::new(
                crmkit_pipeline::currency::CURRENCY_SETTINGS,
                f.tenant.as_uuid(),
            ),
        )
        .await
        .at("audit")?;
    ensure_eq!(audit.len(), 3, "three base changes audited");
    Ok(())
}

/// Members: contacts and leads, add twice is a Duplicate, a contact of another tenant or a
/// deleted one is a Validation error, status updates, removal, keyset-paged lists.
pub async fn members(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let (c, _) = apis(&f)?;
    let a = &f.admin;
    let camp = c
        .create(a, NewCampaign::named("Members", CampaignKind::Email))
        .await
        .at("create")?;
    let mut contacts = vec![];
    for i in 0..7 {
        contacts.push(
            f.contacts
                .create(a, NewContact::named("M", format!("{i}")))
                .await
                .at("contact")?,
        );
    }
    let seq = f.last_seq().await?;
    for (i, ct) in contacts.iter().enumerate() {
        let status = MemberStatus::ALL[i % 4];
        let m = c
            .add_member(a, camp.id, RecordRef::from(ct.id), status)
            .await
            .at("add")?;
        ensure_eq!(m.status, status, "status");
    }
    ensure_eq!(f.events_after(seq).await?.len(), 7, "one event per member");
    let dup = c
        .add_member(
            a,
            camp.id,
            RecordRef::from(contacts[0].id),
            MemberStatus::Sent,
        )
        .await;
    match dup {
        Err(Error::Duplicate {
            field, existing, ..
        }) if field == "member" && existing.is_some() => {}
        other => return Err(Failure::new(format!("add twice: {other:?}"))),
    }
    // Keyset pages.
    for limit in [1, 2, 3, 7, 50] {
        let listed = all_members(&c, a, camp.id, limit).await?;
        ensure_eq!(
            listed.iter().map(|m| m.member.id).collect::<Vec<_>>(),
            contacts.iter().map(|c| c.id.as_uuid()).collect::<Vec<_>>(),
            "members in order, limit {limit}"
        );
    }
    let responded = c
        .list_members(
            a,
            camp.id,
            &Query::new().filter(Filter::eq("status", "responded")),
        )
        .await
        .at("filter members")?;
    ensure_eq!(responded.items.len(), 2, "members by status");
    // A cursor of another campaign's list is refused.
    let other = c
        .create(a, NewCampaign::named("Other", CampaignKind::Event))
        .await
        .at("other")?;
    let page = c
        .list_members(a, camp.id, &Query::new().limit(2))
        .await
        .at("page")?;
    let cursor = page.next_cursor.ok_or_else(|| Failure::new("no cursor"))?;
    expect_validation(
        c.list_members(a, other.id, &Query::new().limit(2).after(cursor))
            .await,
        "cursor",
        "cursor of another campaign",
    )?;

    // Update and remove.
    let who = RecordRef::from(contacts[0].id);
    let up = c
        .update_member(a, camp.id, &who, MemberStatus::Converted)
        .await
        .at("update member")?;
    ensure_eq!(up.version, 2, "member version");
    ensure_eq!(
        c.get_member(a, camp.id, &who).await.at("get member")?,
        up,
        "member round trip"
    );
    let removed = c.remove_member(a, camp.id, &who).await.at("remove")?;
    ensure_eq!(removed.status, MemberStatus::Converted, "removed member");
    expect_variant(
        c.get_member(a, camp.id, &who).await,
        "NotFound(campaign_member)",
        "removed",
    )?;
    expect_variant(
        c.remove_member(a, camp.id, &who).await,
        "NotFound(campaign_member)",
        "remove twice",
    )?;
    c.add_member(a, camp.id, who.clone(), MemberStatus::Targeted)
        .await
        .at("add again after removal")?;

    // Bad members write nothing.
    let g = setup(store).await?;
    let foreign = g.person(&g.admin, "Other", "Tenant").await?;
    let gone = f.person(a, "Gone", "Soon").await?;
    f.contacts
        .delete(a, gone.id, gone.version)
        .await
        .at("delete contact")?;
    let before = f.rows_and_seq().await?;
    for (m, what) in [
        (RecordRef::from(foreign.id), "a contact of another tenant"),
        (RecordRef::from(gone.id), "a deleted contact"),
        (
            RecordRef::from(crmkit_core::ContactId::new()),
            "a contact that does not exist",
        ),
        (
            RecordRef::from(crmkit_core::OrganizationId::new()),
            "an organization",
        ),
    ] {
        expect_validation(
            c.add_member(a, camp.id, m, MemberStatus::Targeted).await,
            "member",
            what,
        )?;
    }
    // Leads: checked by the same reference rule.
    let leads = Leads::new(store).at("Leads::new")?;
    expect_validation(
        c.add_member(
            a,
            camp.id,
            RecordRef::from(crmkit_core::LeadId::new()),
            MemberStatus::Targeted,
        )
        .await,
        "member",
        "a lead that does not exist",
    )?;
    // A lead of another tenant.
    let foreign_lead = leads
        .create(&g.admin, NewLead::named("Other", "Tenant"))
        .await
        .at("foreign lead")?;
    expect_validation(
        c.add_member(
            a,
            camp.id,
            RecordRef::from(foreign_lead.id),
            MemberStatus::Targeted,
        )
        .await,
        "member",
        "a lead of another tenant",
    )?;
    ensure_eq!(f.rows_and_seq().await?, before, "bad members write nothing");
    let lead = leads
        .create(a, NewLead::named("Lead", "Member"))
        .await
        .at("lead")?;
    c.add_member(a, camp.id, RecordRef::from(lead.id), MemberStatus::Sent)
        .await
        .at("add a lead")?;
    // Members of a deleted campaign are out of reach.
    let del = c.delete(a, camp.id, camp.version).await.at("delete")?;
    expect_variant(
        c.list_members(a, camp.id, &Query::new()).await,
        "NotFound(campaign)",
        "members of a deleted campaign",
    )?;
    c.restore(a, camp.id, del.version).await.at("restore")?;
    ensure_eq!(
        all_members(&c, a, camp.id, 100).await?.len(),
        8,
        "members survive delete and restore"
    );
    Ok(())
}

/// Visibility (own and team campaigns for Reps, pushed into lists; NotFound otherwise;
/// no writes outside it) and tenant isolation of campaigns, members and rates.
pub async fn visibility_and_isolation(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let (c, x) = apis(&f)?;
    let mine = c
        .create(&f.rep, NewCampaign::named("Rep's", CampaignKind::Email))
        .await
        .at("rep campaign")?;
    let team = c
        .create(
            &f.manager,
            NewCampaign {
                team: Some(f.team_x),
                ..NewCampaign::named("Team X", CampaignKind::Event)
            },
        )
        .await
        .at("team campaign")?;
    let other = c
        .create(
            &f.manager,
            NewCampaign {
                team: Some(f.team_y),
                ..NewCampaign::named("Team Y", CampaignKind::Partner)
            },
        )
        .await
        .at("other campaign")?;
    let ids = |v: Vec<Campaign>| {
        let mut v: Vec<_> = v.into_iter().map(|c| c.id).collect();
        v.sort();
        v
    };
    let mut expect_rep = vec![mine.id, team.id];
    expect_rep.sort();
    ensure_eq!(
        ids(all_campaigns(&c, &f.rep, &Query::new()).await?),
        expect_rep,
        "a rep lists own and team campaigns"
    );
    ensure_eq!(
        ids(all_campaigns(&c, &f.readonly, &Query::new()).await?),
        vec![team.id],
        "read-only in team X"
    );
    ensure_eq!(
        ids(all_campaigns(&c, &f.rep_y, &Query::new()).await?),
        vec![other.id],
        "rep in team Y"
    );
    ensure_eq!(
        c.list(&f.rep, &Query::new().with_total())
            .await
            .at("total")?
            .total,
        Some(2),
        "counts follow visibility"
    );
    expect_variant(
        c.get(&f.rep, other.id).await,
        "NotFound(campaign)",
        "hidden",
    )?;
    expect_variant(
        c.update(&f.rep, other.id, 1, CampaignPatch::default())
            .await,
        "NotFound(campaign)",
        "update hidden",
    )?;
    expect_variant(
        c.delete(&f.rep, other.id, 1).await,
        "NotFound(campaign)",
        "delete hidden",
    )?;
    expect_variant(
        c.roi_inputs(&f.rep, other.id).await,
        "NotFound(campaign)",
        "roi of hidden",
    )?;
    let ct = f.person(&f.rep, "Vis", "Ible").await?;
    expect_variant(
        c.add_member(&f.rep, other.id, RecordRef::from(ct.id), MemberStatus::Sent)
            .await,
        "NotFound(campaign)",
        "member of hidden",
    )?;
    expect_variant(
        c.add_member(
            &f.readonly,
            team.id,
            RecordRef::from(ct.id),
            MemberStatus::Sent,
        )
        .await,
        "PermissionDenied",
        "read-only adds a member",
    )?;
    // A contact the rep cannot see is not a valid member for them.
    let hidden = f.person(&f.rep_y, "Hid", "Den").await?;
    expect_validation(
        c.add_member(
            &f.rep,
            mine.id,
            RecordRef::from(hidden.id),
            MemberStatus::Sent,
        )
        .await,
        "member",
        "a contact the rep cannot see",
    )?;

    // Tenant isolation: another tenant with colliding data sees nothing of this one.
    let g = setup(store).await?;
    let (cg, xg) = apis(&g)?;
    let before = all_campaigns(&c, &f.admin, &Query::new().include_deleted()).await?;
    cg.create(&g.admin, NewCampaign::named("Rep's", CampaignKind::Email))
        .await
        .at("colliding")?;
    ensure!(
        all_campaigns(&cg, &g.admin, &Query::new()).await?.len() == 1,
        "other tenant sees only its own"
    );
    expect_variant(
        cg.get(&g.admin, mine.id).await,
        "NotFound(campaign)",
        "cross-tenant get",
    )?;
    expect_variant(
        cg.update(&g.admin, mine.id, 1, CampaignPatch::default())
            .await,
        "NotFound(campaign)",
        "cross-tenant update",
    )?;
    expect_variant(
        cg.list_members(&g.admin, mine.id, &Query::new()).await,
        "NotFound(campaign)",
        "cross-tenant members",
    )?;
    ensure_eq!(
        all_campaigns(&c, &f.admin, &Query::new().include_deleted()).await?,
        before,
        "tenant A unchanged"
    );
    let d = day(2024, 1, 1)?;
    x.set_base_currency(&f.admin, cur("EUR")?)
        .await
        .at("base A")?;
    x.set_rate(&f.admin, cur("USD")?, d, dec("0.9")?)
        .await
        .at("rate A")?;
    ensure_eq!(
        xg.base_currency(&g.admin).await.at("base B")?,
        None,
        "B has no base"
    );
    xg.set_base_currency(&g.admin, cur("EUR")?)
        .await
        .at("base B")?;
    expect_variant(
        xg.rate_at(&g.admin, cur("USD")?, d).await,
        "NotFound(exchange_rate)",
        "A's rate is not B's",
    )?;
    xg.set_rate(&g.admin, cur("USD")?, d, dec("0.5")?)
        .await
        .at("rate B")?;
    ensure_eq!(
        x.rate_at(&f.admin, cur("USD")?, d).await.at("A")?.rate,
        dec("0.9")?,
        "A's rate unchanged"
    );
    Ok(())
}

/// Writes rows straight into another module's table: the given columns, NULL in other
/// nullable columns, neutral unique values in required ones.
async fn insert_rows(f: &Fixture, table: &TableDef, rows: Vec<Vec<(&str, Value)>>) -> CheckResult {
    let mut cs = Changeset::new(&f.admin);
    for set in rows {
        let row: Row = table
            .columns
            .iter()
            .map(|col| {
                if let Some((_, v)) = set.iter().find(|(n, _)| *n == col.name) {
                    return v.clone();
                }
                if col.nullable {
                    return Value::Null;
                }
                match col.ty {
                    ColumnType::Uuid => Value::Uuid(Uuid::now_v7()),
                    ColumnType::Text(n) => {
                        let s = Uuid::now_v7().simple().to_string();
                        Value::Text(s.chars().rev().take(n.clamp(1, 32) as usize).collect())
                    }
                    ColumnType::LongText => Value::Text("{}".into()),
                    ColumnType::Date => Value::Text("2024-01-01".into()),
                    ColumnType::Int
                    | ColumnType::Bool
                    | ColumnType::Timestamp
                    | ColumnType::Decimal => Value::Int(0),
                }
            })
            .collect();
        cs.writes.push(Write::Insert {
            table: table.name,
            row,
        });
    }
    f.store.commit(cs).await.at("insert rows")?;
    Ok(())
}

/// ROI inputs: cost and budget from the campaign; attributed open and won amounts per
/// currency (exact, including sums beyond 2^53 units and beyond what one amount holds,
/// 2^63 units), deal counts by state and lead counts
/// aggregated in the database; deleted deals and leads and other campaigns' do not count;
/// a Rep counts only what they may see.
pub async fn roi_inputs(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let (c, _) = apis(&f)?;
    let a = &f.admin;
    let camp = c
        .create(
            &f.rep,
            NewCampaign {
                budget: Some(money("1000", "EUR")?),
                actual_cost: Some(money("250.25", "EUR")?),
                expected_revenue: Some(money("9000", "USD")?),
                ..NewCampaign::named("ROI", CampaignKind::Advertising)
            },
        )
        .await
        .at("campaign")?;
    let empty = c.roi_inputs(a, camp.id).await.at("empty roi")?;
    ensure_eq!(empty.cost, Some(money("250.25", "EUR")?), "cost");
    ensure_eq!(empty.budget, Some(money("1000", "EUR")?), "budget");
    ensure_eq!(empty.attributed_pipeline, vec![], "no pipeline");
    ensure_eq!(
        empty.attributed_deals,
        AttributedDeals::default(),
        "no deals"
    );
    ensure_eq!(empty.attributed_leads, 0, "no leads");
    let schema = f.store.backend().schema();
    let deals = schema.table(DEAL_TABLE).at("deal table")?.clone();
    let leads = schema.table(LEAD_TABLE).at("lead table")?.clone();
    let other = c
        .create(a, NewCampaign::named("Other", CampaignKind::Other))
        .await
        .at("other")?;
    let rep = f.rep.actor().user.as_uuid();
    let boss = f.manager.actor().user.as_uuid();
    let deal = |campaign: Uuid,
                amount: Option<&str>,
                code: Option<&str>,
                status: &str,
                owner: Uuid,
                deleted: bool|
     -> CheckResult<Vec<(&'static str, Value)>> {
        let units = match (amount, code) {
            (Some(a), Some(c)) => Value::Int(money(a, c)?.to_storage_units().at("units")?),
            _ => Value::Null,
        };
        Ok(vec![
            ("id", Value::Uuid(Uuid::now_v7())),
            ("campaign_id", Value::Uuid(campaign)),
            ("amount", units),
            ("currency", Value::opt_text(code)),
            ("status", Value::Text(status.into())),
            ("owner_id", Value::Uuid(owner)),
            (
                "deleted_at",
                if deleted { Value::Int(1) } else { Value::Null },
            ),
        ])
    };
    let cid = camp.id.as_uuid();
    let big = "922337203685.4775";
    let max = "922337203685477.5807";
    let rows = vec![
        deal(cid, Some("100.10"), Some("EUR"), "open", rep, false)?,
        deal(cid, Some("0.0001"), Some("EUR"), "open", boss, false)?,
        deal(cid, Some("5"), Some("USD"), "open", rep, false)?,
        deal(cid, None, None, "open", rep, false)?,
        deal(cid, Some(big), Some("EUR"), "won", boss, false)?,
        deal(cid, Some(big), Some("EUR"), "won", boss, false)?,
        deal(cid, Some("1000"), Some("EUR"), "won", rep, false)?,
        deal(cid, Some(max), Some("GBP"), "won", boss, false)?,
        deal(cid, Some(max), Some("GBP"), "won", boss, false)?,
        deal(cid, Some("50"), Some("EUR"), "lost", rep, false)?,
        deal(cid, Some("999"), Some("EUR"), "open", rep, true)?,
        deal(
            other.id.as_uuid(),
            Some("7"),
            Some("EUR"),
            "open",
            rep,
            false,
        )?,
    ];
    insert_rows(&f, &deals, rows).await?;
    let lead = |campaign: Uuid, owner: Uuid, deleted: bool| {
        vec![
            ("id", Value::Uuid(Uuid::now_v7())),
            ("campaign_id", Value::Uuid(campaign)),
            ("owner_id", Value::Uuid(owner)),
            (
                "deleted_at",
                if deleted { Value::Int(1) } else { Value::Null },
            ),
        ]
    };
    insert_rows(
        &f,
        &leads,
        vec![
            lead(cid, rep, false),
            lead(cid, rep, false),
            lead(cid, boss, false),
            lead(cid, rep, true),
            lead(other.id.as_uuid(), rep, false),
        ],
    )
    .await?;
    let roi = c.roi_inputs(a, camp.id).await.at("roi")?;
    let big_sum = money(big, "EUR")?
        .checked_add(&money(big, "EUR")?)
        .at("sum")?
        .checked_add(&money("1000", "EUR")?)
        .at("sum")?;
    ensure_eq!(
        roi.attributed_pipeline,
        totals(&[money("100.1001", "EUR")?, money("5", "USD")?])?,
        "open pipeline per currency"
    );
    let gbp_max = i128::from(i64::MAX);
    let mut won = totals(&[big_sum])?;
    won.push(CurrencyTotal {
        currency: Currency::parse("GBP").at("GBP")?,
        units: 2 * gbp_max,
    });
    ensure_eq!(
        roi.attributed_won,
        won,
        "won per currency, exact (GBP beyond 64 bits)"
    );
    ensure_eq!(
        roi.attributed_won[1].amount(),
        Some(Decimal::new(i64::MAX, 4) * Decimal::TWO),
        "the GBP total as a decimal"
    );
    ensure_eq!(
        roi.attributed_deals,
        AttributedDeals {
            open: 4,
            won: 5,
            lost: 1
        },
        "deal counts"
    );
    ensure_eq!(roi.attributed_leads, 3, "lead count");
    ensure_eq!(roi.cost, Some(money("250.25", "EUR")?), "cost");
    ensure_eq!(
        roi.expected_revenue,
        Some(money("9000", "USD")?),
        "expected revenue"
    );
    // A rep counts only their own deals and leads.
    let mine = c.roi_inputs(&f.rep, camp.id).await.at("rep roi")?;
    ensure_eq!(
        mine.attributed_pipeline,
        totals(&[money("100.10", "EUR")?, money("5", "USD")?])?,
        "rep's open pipeline"
    );
    ensure_eq!(
        mine.attributed_won,
        totals(&[money("1000", "EUR")?])?,
        "rep's won"
    );
    ensure_eq!(
        mine.attributed_deals,
        AttributedDeals {
            open: 3,
            won: 1,
            lost: 1
        },
        "rep's deal counts"
    );
    ensure_eq!(mine.attributed_leads, 2, "rep's leads");
    // Members by status.
    let ct = f.person(a, "R", "O").await?;
    c.add_member(a, camp.id, RecordRef::from(ct.id), MemberStatus::Responded)
        .await
        .at("member")?;
    let roi = c.roi_inputs(a, camp.id).await.at("roi")?;
    ensure_eq!(
        roi.members,
        vec![
            (MemberStatus::Targeted, 0),
            (MemberStatus::Sent, 0),
            (MemberStatus::Responded, 1),
            (MemberStatus::Converted, 0)
        ],
        "members by status"
    );
    // Another tenant's rows do not count.
    let g = setup(store).await?;
    insert_rows(
        &g,
        &deals,
        vec![deal(cid, Some("1"), Some("EUR"), "won", rep, false)?],
    )
    .await?;
    ensure_eq!(
        c.roi_inputs(a, camp.id).await.at("roi")?.attributed_won,
        won,
        "isolation of attributed deals"
    );
    // Many campaigns at once: the same figures as one by one; a campaign without
    // attributed records has no entry.
    let quiet = c
        .create(a, NewCampaign::named("Quiet", CampaignKind::Other))
        .await
        .at("quiet")?;
    let many = c
        .attribution(a, Some(&[camp.id, other.id, quiet.id]))
        .await
        .at("attribution")?;
    ensure_eq!(many.len(), 2, "two campaigns with attributed records");
    ensure_eq!(many[&camp.id].won, won, "attribution of ROI");
    ensure_eq!(many[&camp.id].leads, 3, "leads of ROI");
    ensure_eq!(
        (many[&other.id].deals.open, many[&other.id].leads),
        (1, 1),
        "attribution of Other"
    );
    ensure_eq!(
        c.attribution(a, None).await.at("attribution of all")?,
        many,
        "every campaign"
    );
    Ok(())
}

/// The exact totals of these amounts (one per currency, in order).
fn totals(m: &[Money]) -> CheckResult<Vec<CurrencyTotal>> {
    m.iter().map(|m| CurrencyTotal::of(m).at("total")).collect()
}

/// Runs `cmd` with a fault before its n-th write for n = 0, 1, ... until it succeeds;
/// every failing run is a Storage error that changes nothing.
async fn fail_at_every_write<T: fmt::Debug>(
    f: &Fixture,
    what: &str,
    cmd: impl AsyncFn() -> crmkit_core::Result<T>,
) -> CheckResult<T> {
    Ok(f.fail_at_every_write_no_trace(what, cmd).await?.1)
}

/// F2: a fault before any write of a campaign or currency command leaves no trace.
pub async fn atomicity(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    define_campaign_fields(&f).await?;
    let (c, x) = apis(&f)?;
    let a = &f.admin;
    let input = full_campaign(&f)?;
    let camp = fail_at_every_write(&f, "create", async || c.create(a, input.clone()).await).await?;
    let patch = CampaignPatch {
        name: Some("Renamed".into()),
        status: Some(CampaignStatus::Active),
        custom: BTreeMap::from([(
            "channel".to_string(),
            Some(CustomValue::Choice("organic".into())),
        )]),
        ..Default::default()
    };
    let camp = fail_at_every_write(&f, "update", async || {
        c.update(a, camp.id, camp.version, patch.clone()).await
    })
    .await?;
    ensure_eq!(camp.version, 2, "one version bump");
    let del = fail_at_every_write(&f, "delete", async || c.delete(a, camp.id, 2).await).await?;
    let camp = fail_at_every_write(&f, "restore", async || {
        c.restore(a, camp.id, del.version).await
    })
    .await?;
    let ct = f.person(a, "A", "Tom").await?;
    let who = RecordRef::from(ct.id);
    fail_at_every_write(&f, "add_member", async || {
        c.add_member(a, camp.id, who.clone(), MemberStatus::Targeted)
            .await
    })
    .await?;
    fail_at_every_write(&f, "update_member", async || {
        c.update_member(a, camp.id, &who, MemberStatus::Sent).await
    })
    .await?;
    fail_at_every_write(&f, "remove_member", async || {
        c.remove_member(a, camp.id, &who).await
    })
    .await?;
    fail_at_every_write(&f, "set_base_currency", async || {
        x.set_base_currency(a, Currency::parse("EUR")?).await
    })
    .await?;
    let d = day(2024, 1, 1)?;
    fail_at_every_write(&f, "set_rate", async || {
        x.set_rate(a, Currency::parse("USD")?, d, Decimal::new(91, 2))
            .await
    })
    .await?;
    fail_at_every_write(&f, "replace rate", async || {
        x.set_rate(a, Currency::parse("USD")?, d, Decimal::new(92, 2))
            .await
    })
    .await?;
    fail_at_every_write(&f, "change base", async || {
        x.set_base_currency(a, Currency::parse("USD")?).await
    })
    .await?;
    // The feed is gap-free.
    for (expected, e) in (1..).zip(f.events_after(0).await?) {
        ensure_eq!(e.seq, expected, "gap-free sequence");
    }
    Ok(())
}

/// The one reference rule for campaign members: as a Rep adding members to the Rep's own
/// campaign, a contact or lead hidden from the Rep, a deleted one and another tenant's
/// are refused with exactly the error of one that does not exist, and nothing is written;
/// a contact and a lead the Rep sees are added.
pub async fn member_references(store: &Store) -> CheckResult {
    let f = setup(store).await?;
    let g = setup(store).await?;
    let (c, _) = apis(&f)?;
    let leads = Leads::new(store).at("Leads::new")?;
    let rep = &f.rep_y;
    let camp = c
        .create(rep, NewCampaign::named("Rep's", CampaignKind::Email))
        .await
        .at("rep's campaign")?;
    let lead = |ctx: &Ctx, name: &'static str| {
        let api = leads.clone();
        let ctx = ctx.clone();
        async move {
            api.create(&ctx, NewLead::named(name, "Member"))
                .await
                .at("lead")
        }
    };
    let UnreachableContacts {
        hidden: hidden_c,
        gone: gone_c,
        foreign: foreign_c,
    } = f.unreachable_contacts(rep, &g, "Member").await?;
    let hidden_l = lead(&f.admin, "Hidden").await?;
    let gone_l = lead(rep, "Gone").await?;
    leads
        .delete(rep, gone_l.id, gone_l.version)
        .await
        .at("delete lead")?;
    let foreign_l = leads
        .create(&g.admin, NewLead::named("Foreign", "Member"))
        .await
        .at("foreign lead")?;
    let before = f.rows_and_seq().await?;
    for (missing, others) in [
        (
            RecordRef::from(crmkit_core::ContactId::new()),
            [
                ("a hidden contact", RecordRef::from(hidden_c.id)),
                ("a deleted contact", RecordRef::from(gone_c.id)),
                ("another tenant's contact", RecordRef::from(foreign_c.id)),
            ],
        ),
        (
            RecordRef::from(crmkit_core::LeadId::new()),
            [
                ("a hidden lead", RecordRef::from(hidden_l.id)),
                ("a deleted lead", RecordRef::from(gone_l.id)),
                ("another tenant's lead", RecordRef::from(foreign_l.id)),
            ],
        ),
    ] {
        let none = validation_reasons(
            &c.add_member(rep, camp.id, missing.clone(), MemberStatus::Targeted)
                .await,
        );
        ensure!(
            none.as_ref()
                .is_some_and(|v| v.iter().any(|(f, _)| f == "member")),
            "a missing {}: {none:?}",
            missing.kind
        );
        for (what, m) in others {
            let got =
                validation_reasons(&c.add_member(rep, camp.id, m, MemberStatus::Targeted).await);
            ensure_eq!(got, none, "{what} vs a missing {}", missing.kind);
        }
    }
    ensure_eq!(
        f.rows_and_seq().await?,
        before,
        "refused members wrote nothing"
    );
    let mine_c = f.person(rep, "Mine", "Member").await?;
    let mine_l = lead(rep, "Mine").await?;
    for m in [RecordRef::from(mine_c.id), RecordRef::from(mine_l.id)] {
        c.add_member(rep, camp.id, m, MemberStatus::Targeted)
            .await
            .at("a member the rep sees")?;
    }
    Ok(())
}

/// No context without a tenant; the APIs need the pipeline module.
pub async fn composition(store: &Store) -> CheckResult {
    ensure!(
        Ctx::new(
            TenantId::from_uuid(Uuid::nil()),
            crmkit_core::Actor::new(crmkit_core::UserId::new(), [crmkit_core::Role::Admin], []),
        )
        .is_err(),
        "nil tenant context"
    );
    let m = Modules::builder()
        .add(crmkit_contacts::ContactsModule)
        .build()
        .at("contacts only")?;
    let bare = Store::new(
        crmkit_core::memory::MemoryBackend::new((**m.schema()).clone()),
        m,
    );
    expect_variant(
        Campaigns::new(&bare),
        "Config",
        "campaigns without pipeline",
    )?;
    expect_variant(
        Currencies::new(&bare),
        "Config",
        "currencies without pipeline",
    )?;
    Campaigns::new(store).at("campaigns")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The list
// ---------------------------------------------------------------------------------------

suite_checks! {
    /// Every check of this module by name. [`atomicity`] injects faults: run it alone.
    names: pipeline_campaigns_check_names,
    checks: [
        campaign_crud,
        bad_input,
        rates_by_date,
        conversion_exactness,
        base_currency_changes,
        members,
        visibility_and_isolation,
        roi_inputs,
        atomicity,
        composition,
        member_references,
    ],
}
