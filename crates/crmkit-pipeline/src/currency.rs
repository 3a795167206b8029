//! The tenant's base currency and exchange rates with effective dates, for reporting in one
//! currency.
//!
//! - The base currency is a per-tenant setting (none until an Admin sets it with
//!   [`Currencies::set_base_currency`]).
//! - An exchange rate says how many units of the base currency one unit of another
//!   currency is worth from a date on (`1 USD = 0.92 EUR from 2024-03-01`). It is stored
//!   for the base it was set against; after the base currency changes, rates against the
//!   old base no longer apply and [`Currencies::rate_at`] finds none until rates against
//!   the new base are set.
//! - Rates are exact decimals: greater than zero, at most [`MAX_RATE_SCALE`] fractional
//!   digits and below [`MAX_RATE`]. They are stored as the text of the normalised
//!   [`Decimal`] (`"0.92"`), which every backend round-trips byte for byte.
//! - The rate for a date is the one with the latest `effective_from` on or before it.
//!
//! ## Conversion
//!
//! [`Currencies::convert`] computes `amount × rate` exactly (in 128-bit integer arithmetic,
//! so that no intermediate digit is lost even for the largest storable amount and a rate
//! with twelve fractional digits) and rounds the product once, to the base currency's
//! minor unit (2 digits for EUR, 0 for JPY), **half to even** (banker's rounding,
//! [`Rounding::HalfEven`]). Converting the base currency into itself is the identity (no
//! rounding). A result that storage cannot keep is a Validation error on `amount`.

use chrono::NaiveDate;
use crmkit_core::event::decode_timestamp;
use crmkit_core::store::{CmpOp, ColumnDef, ColumnType, Cond, OrderKey, Select, TableDef, Value};
use crmkit_core::store::{IndexDef, Write};
use crmkit_core::{
    AuditChange, Changeset, Ctx, Currency, Error, ExchangeRateId, Money, NewEvent, RecordKind,
    RecordRef, Result, Rounding, Store, ValidationErrors,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Event kinds this part emits.
pub const EVENT_KINDS: &[&str] = &["currency.base_set", "exchange_rate.set"];

/// The per-tenant settings table of the pipeline module (`key` → `value`).
pub const SETTINGS_TABLE: &str = "pipeline_setting";
/// The exchange-rate table.
pub const RATES_TABLE: &str = "pipeline_exchange_rate";

/// The settings key of the base currency.
const BASE_CURRENCY_KEY: &str = "base_currency";

/// Most fractional digits of an exchange rate.
pub const MAX_RATE_SCALE: u32 = 12;

/// Rates must be below this (10^12).
pub const MAX_RATE: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0);

/// The record kind of exchange rates (audit entries and events).
pub const EXCHANGE_RATE: RecordKind = RecordKind::new("exchange_rate");
/// The record kind of the currency settings (audit entries and events; the record id is
/// the tenant's id).
pub const CURRENCY_SETTINGS: RecordKind = RecordKind::new("currency_settings");

pub(crate) fn tables() -> Vec<TableDef> {
    use ColumnType::*;
    vec![
        TableDef::new(
            SETTINGS_TABLE,
            vec![
                ColumnDef::required("key", Text(64)),
                ColumnDef::required("value", Text(255)),
                ColumnDef::required("updated_at", Timestamp),
                ColumnDef::required("version", Int),
            ],
            ["key"],
        ),
        TableDef::new(
            RATES_TABLE,
            vec![
                ColumnDef::required("currency", Text(3)),
                ColumnDef::required("to_currency", Text(3)),
                ColumnDef::required("effective_from", Date),
                ColumnDef::required("id", Uuid),
                ColumnDef::required("rate", Text(40)),
                ColumnDef::required("created_at", Timestamp),
                ColumnDef::required("updated_at", Timestamp),
                ColumnDef::required("version", Int),
            ],
            ["currency", "to_currency", "effective_from"],
        )
        .index(IndexDef::unique("pipeline_exchange_rate_id", ["id"])),
    ]
}

/// An exchange rate: one unit of `currency` is worth `rate` units of `base` from
/// `effective_from` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeRate {
    /// Its id (for audit entries and events).
    pub id: ExchangeRateId,
    /// The currency converted from.
    pub currency: Currency,
    /// The currency converted to (the base currency when it was set).
    pub base: Currency,
    /// The first day it applies.
    pub effective_from: NaiveDate,
    /// Units of `base` per unit of `currency` (normalised: no trailing zeros).
    pub rate: Decimal,
    /// Changed (microseconds since the epoch are what storage keeps).
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// Version (1 when first set, +1 per change).
    pub version: u64,
}

/// The currencies API: the tenant's base currency, exchange rates, and conversion.
#[derive(Clone, Debug)]
pub struct Currencies {
    store: Store,
}

fn date_text(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// Checks a rate: above zero, at most [`MAX_RATE_SCALE`] fractional digits, below
/// [`MAX_RATE`]. Returns it normalised.
pub fn check_rate(errs: &mut ValidationErrors, rate: Decimal) -> Option<Decimal> {
    let r = rate.normalize();
    if r <= Decimal::ZERO {
        errs.push("rate", "must be greater than zero");
        None
    } else if r.scale() > MAX_RATE_SCALE {
        errs.push(
            "rate",
            format!("has more than {MAX_RATE_SCALE} digits after the decimal point"),
        );
        None
    } else if r >= MAX_RATE {
        errs.push("rate", format!("must be below {MAX_RATE}"));
        None
    } else {
        Some(r)
    }
}

fn check_day(errs: &mut ValidationErrors, field: &str, d: NaiveDate) {
    if let Err(reason) = crmkit_core::text::check_date(d) {
        errs.push(field, reason);
    }
}

/// `amount × rate`, rounded half to even to `digits` fractional digits, computed exactly.
/// `None` when the result does not fit 64-bit minor units.
pub fn multiply_exact(amount: Decimal, rate: Decimal, digits: u32) -> Option<Decimal> {
    // amount = a / 10^sa, rate = m / 10^sr; result = a·m / 10^(sa+sr), rounded to `digits`.
    let a = amount.mantissa();
    let m = rate.mantissa();
    let scale = amount.scale() + rate.scale();
    if scale <= digits {
        let p = a.checked_mul(m)?;
        let up = 10i128.checked_pow(digits - scale)?;
        let v = p.checked_mul(up)?;
        return i64::try_from(v).ok().map(|v| Decimal::new(v, digits));
    }
    let d = 10i128.checked_pow(scale - digits)?;
    // a·m = a·(hi·d + lo), so a·m / d = a·hi + a·lo / d. For money (|a| < 2^63) and a
    // checked rate (scale <= 12, so d <= 10^16) a·lo < 2^63 · 10^16 fits i128; anything
    // larger reports overflow as None through the checked operations.
    let hi = m.div_euclid(d);
    let lo = m.rem_euclid(d);
    let q1 = a.checked_mul(hi)?;
    let t = a.checked_mul(lo)?;
    let q2 = t.div_euclid(d);
    let r = t.rem_euclid(d);
    let mut q = q1.checked_add(q2)?;
    // The value is q + r/d with 0 <= r < d: round half to even.
    let twice = r.checked_mul(2)?;
    if twice > d || (twice == d && q.rem_euclid(2) == 1) {
        q = q.checked_add(1)?;
    }
    i64::try_from(q).ok().map(|v| Decimal::new(v, digits))
}

impl Currencies {
    /// The API over a store composed with the pipeline module.
    pub fn new(store: &Store) -> Result<Self> {
        store.require_module("pipeline")?;
        Ok(Currencies {
            store: store.clone(),
        })
    }

    fn settings_record(ctx: &Ctx) -> RecordRef {
        RecordRef::new(CURRENCY_SETTINGS, ctx.tenant().as_uuid())
    }

    /// The tenant's base currency, if one is set. Readable by every actor.
    pub async fn base_currency(&self, ctx: &Ctx) -> Result<Option<Currency>> {
        let row = self
            .store
            .backend()
            .get(
                ctx.tenant(),
                SETTINGS_TABLE,
                &[Value::Text(BASE_CURRENCY_KEY.into())],
            )
            .await?;
        match row {
            None => Ok(None),
            Some(r) => {
                let code = r[1]
                    .as_text()
                    .ok_or_else(|| Error::storage("malformed setting row"))?;
                Ok(Some(Currency::parse(code).map_err(|_| {
                    Error::storage(format!("stored base currency {code:?} is not ISO 4217"))
                })?))
            }
        }
    }

    /// The base currency, or NotFound (`currency_settings`) when none is set.
    pub async fn require_base_currency(&self, ctx: &Ctx) -> Result<Currency> {
        self.base_currency(ctx).await?.ok_or_else(|| {
            Error::not_found(CURRENCY_SETTINGS, format!("{BASE_CURRENCY_KEY} (not set)"))
        })
    }

    /// Sets the tenant's base currency (Admin only). Rates set against an earlier base stay
    /// stored but no longer apply. Setting the current base again changes nothing.
    pub async fn set_base_currency(&self, ctx: &Ctx, currency: Currency) -> Result<Currency> {
        ctx.actor().require_admin("set base currency")?;
        let key = [Value::Text(BASE_CURRENCY_KEY.into())];
        let old = self
            .store
            .backend()
            .get(ctx.tenant(), SETTINGS_TABLE, &key)
            .await?;
        let now = ctx.now();
        let record = Self::settings_record(ctx);
        let mut cs = Changeset::new(ctx);
        let old_code = match &old {
            Some(r) => {
                let code = r[1].as_text().unwrap_or_default().to_owned();
                if code == currency.code() {
                    return Ok(currency);
                }
                let version = r[3]
                    .as_int()
                    .ok_or_else(|| Error::storage("malformed setting row"))?;
                cs.writes.push(Write::Update {
                    table: SETTINGS_TABLE,
                    key: key.to_vec(),
                    set: vec![
                        ("value", Value::Text(currency.code().into())),
                        ("updated_at", Value::timestamp(now)),
                    ],
                    expect_version: Some(version as u64),
                    record: record.clone(),
                });
                Some(code)
            }
            None => {
                cs.writes.push(Write::Insert {
                    table: SETTINGS_TABLE,
                    row: vec![
                        key[0].clone(),
                        Value::Text(currency.code().into()),
                        Value::timestamp(now),
                        Value::Int(1),
                    ],
                });
                None
            }
        };
        cs.audit.push(AuditChange {
            record: record.clone(),
            field: BASE_CURRENCY_KEY.into(),
            old: old_code.as_ref().map(|c| format!("\"{c}\"")),
            new: Some(format!("\"{}\"", currency.code())),
        });
        cs.events.push(NewEvent::new(
            "currency.base_set",
            record,
            vec![BASE_CURRENCY_KEY.into()],
            serde_json::json!({ "old": old_code, "new": currency.code() }),
        ));
        match self.store.commit(cs).await {
            // Two first settings raced: the other one won; report it as a conflict.
            Err(Error::Duplicate { .. }) => Err(Error::Conflict {
                record: Self::settings_record(ctx),
                expected: 0,
                actual: 1,
            }),
            other => other.map(|_| currency),
        }
    }

    async fn load_rate(
        &self,
        ctx: &Ctx,
        currency: Currency,
        base: Currency,
        effective_from: NaiveDate,
    ) -> Result<Option<ExchangeRate>> {
        let row = self
            .store
            .backend()
            .get(
                ctx.tenant(),
                RATES_TABLE,
                &[
                    Value::Text(currency.code().into()),
                    Value::Text(base.code().into()),
                    Value::Text(date_text(effective_from)),
                ],
            )
            .await?;
        row.map(decode_rate).transpose()
    }

    /// Sets the rate of `currency` against the base currency from `effective_from` on
    /// (Admin or Manager). Setting a rate for a date that has one replaces it (a new
    /// version, audited). Bad input is a Validation error naming every bad field: `rate`
    /// (zero or below, more than [`MAX_RATE_SCALE`] fractional digits, too large),
    /// `currency` (the base currency itself), `effective_from` (outside years 1 to 9999);
    /// no base currency set is a Validation error on `base_currency`.
    pub async fn set_rate(
        &self,
        ctx: &Ctx,
        currency: Currency,
        effective_from: NaiveDate,
        rate: Decimal,
    ) -> Result<ExchangeRate> {
        self.set_rate_checked(ctx, Ok(currency), effective_from, rate)
            .await
    }

    /// Like [`Currencies::set_rate`] with the currency as an ISO 4217 code (as an API
    /// layer receives it); an unknown code is a Validation error on `currency`, reported
    /// together with any other bad field.
    pub async fn set_rate_code(
        &self,
        ctx: &Ctx,
        currency: &str,
        effective_from: NaiveDate,
        rate: Decimal,
    ) -> Result<ExchangeRate> {
        self.set_rate_checked(ctx, Currency::parse(currency), effective_from, rate)
            .await
    }

    async fn set_rate_checked(
        &self,
        ctx: &Ctx,
        currency: Result<Currency>,
        effective_from: NaiveDate,
        rate: Decimal,
    ) -> Result<ExchangeRate> {
        ctx.actor().require_manage("set exchange rate")?;
        let mut errs = ValidationErrors::new();
        let currency = errs.check(currency);
        let rate = check_rate(&mut errs, rate);
        check_day(&mut errs, "effective_from", effective_from);
        let base = self.base_currency(ctx).await?;
        match (base, currency) {
            (None, _) => errs.push(
                "base_currency",
                "set the tenant's base currency before exchange rates",
            ),
            (Some(b), Some(c)) if b == c => {
                errs.push("currency", "is the base currency; its rate is always 1")
            }
            _ => {}
        }
        errs.into_result()?;
        let (Some(currency), Some(rate), Some(base)) = (currency, rate, base) else {
            return Err(Error::storage("checked above"));
        };
        let now = ctx.now();
        let old = self.load_rate(ctx, currency, base, effective_from).await?;
        let mut cs = Changeset::new(ctx);
        let new = match &old {
            Some(o) => {
                if o.rate == rate {
                    return Ok(o.clone());
                }
                let new = ExchangeRate {
                    rate,
                    updated_at: now,
                    version: o.version + 1,
                    ..o.clone()
                };
                cs.writes.push(Write::Update {
                    table: RATES_TABLE,
                    key: vec![
                        Value::Text(currency.code().into()),
                        Value::Text(base.code().into()),
                        Value::Text(date_text(effective_from)),
                    ],
                    set: vec![
                        ("rate", Value::Text(rate.to_string())),
                        ("updated_at", Value::timestamp(now)),
                    ],
                    expect_version: Some(o.version),
                    record: RecordRef::from(o.id),
                });
                new
            }
            None => {
                let new = ExchangeRate {
                    id: ExchangeRateId::new(),
                    currency,
                    base,
                    effective_from,
                    rate,
                    updated_at: now,
                    version: 1,
                };
                cs.writes.push(Write::Insert {
                    table: RATES_TABLE,
                    row: vec![
                        Value::Text(currency.code().into()),
                        Value::Text(base.code().into()),
                        Value::Text(date_text(effective_from)),
                        Value::Uuid(new.id.as_uuid()),
                        Value::Text(rate.to_string()),
                        Value::timestamp(now),
                        Value::timestamp(now),
                        Value::Int(1),
                    ],
                });
                new
            }
        };
        let record = RecordRef::from(new.id);
        cs.audit.push(AuditChange {
            record: record.clone(),
            field: "rate".into(),
            old: old.as_ref().map(|o| format!("\"{}\"", o.rate)),
            new: Some(format!("\"{}\"", new.rate)),
        });
        cs.events.push(NewEvent::new(
            "exchange_rate.set",
            record,
            vec!["rate".into()],
            serde_json::to_value(&new).map_err(|e| Error::storage_from("exchange rate", e))?,
        ));
        match self.store.commit(cs).await {
            Err(Error::Duplicate { .. }) => Err(Error::conflict(new.id, 0, 1)),
            other => other.map(|_| new),
        }
    }

    /// Every rate of `currency` against the current base currency, by effective date.
    pub async fn rates(&self, ctx: &Ctx, currency: Currency) -> Result<Vec<ExchangeRate>> {
        let Some(base) = self.base_currency(ctx).await? else {
            return Ok(vec![]);
        };
        let mut s = Select::new(
            RATES_TABLE,
            Cond::eq("currency", currency.code()).and(Cond::eq("to_currency", base.code())),
        );
        s.order = vec![OrderKey::asc("effective_from")];
        crmkit_core::service::select_rows(&self.store, ctx, &s, decode_rate).await
    }

    /// The rate of `currency` against the base currency on `date`: the one with the latest
    /// `effective_from` on or before `date`. The base currency itself has rate 1 (returned
    /// with a nil id, `effective_from` 0001-01-01 and version 0). No base currency, or no
    /// rate on or before the date, is NotFound (`currency_settings` / `exchange_rate`); a
    /// date outside the years 1 to 9999 is a Validation error on `date`.
    pub async fn rate_at(
        &self,
        ctx: &Ctx,
        currency: Currency,
        date: NaiveDate,
    ) -> Result<ExchangeRate> {
        if let Err(reason) = crmkit_core::text::check_date(date) {
            return Err(Error::validation("date", reason));
        }
        let base = self.require_base_currency(ctx).await?;
        if currency == base {
            return Ok(ExchangeRate {
                id: ExchangeRateId::from_uuid(Uuid::nil()),
                currency,
                base,
                effective_from: NaiveDate::from_ymd_opt(1, 1, 1).unwrap_or(NaiveDate::MIN),
                rate: Decimal::ONE,
                updated_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
                version: 0,
            });
        }
        let mut s = Select::new(
            RATES_TABLE,
            Cond::eq("currency", currency.code())
                .and(Cond::eq("to_currency", base.code()))
                .and(Cond::Cmp(
                    "effective_from".into(),
                    CmpOp::Lte,
                    Value::Text(date_text(date)),
                )),
        );
        s.order = vec![OrderKey::desc("effective_from")];
        s.limit = Some(1);
        let rows = self.store.backend().select(ctx.tenant(), &s).await?;
        match rows.into_iter().next() {
            Some(r) => decode_rate(r),
            None => Err(Error::not_found(
                EXCHANGE_RATE,
                format!("{currency}->{base} on {}", date_text(date)),
            )),
        }
    }

    /// `money` in the base currency at `date`: `amount × rate_at(date)`, computed exactly
    /// and rounded once to the base currency's minor unit, half to even (see the module
    /// docs). The base currency converts to itself unchanged. Errors: as
    /// [`Currencies::rate_at`]; a result storage cannot keep is a Validation error on
    /// `amount`.
    pub async fn convert(&self, ctx: &Ctx, money: Money, date: NaiveDate) -> Result<Money> {
        let base = self.require_base_currency(ctx).await?;
        if money.currency() == base {
            return Ok(money);
        }
        let rate = self.rate_at(ctx, money.currency(), date).await?;
        convert_with(money, base, rate.rate)
    }
}

/// Converts `money` into `base` at `rate` (exact product, one half-to-even rounding to the
/// base currency's minor unit). The pure core of [`Currencies::convert`].
pub fn convert_with(money: Money, base: Currency, rate: Decimal) -> Result<Money> {
    if money.currency() == base {
        return Ok(money);
    }
    let digits = base.minor_digits().min(Money::STORAGE_SCALE);
    let amount = multiply_exact(money.amount(), rate.normalize(), digits)
        .ok_or_else(|| Error::validation("amount", "the converted amount is too large"))?;
    Money::new(amount, base)
}

/// The reference computation of a conversion with [`Decimal`] arithmetic (exact while the
/// product fits 28 digits): `(amount × rate)` rounded half to even to the base currency's
/// minor unit. Used by tests to check [`convert_with`].
pub fn convert_reference(money: Money, base: Currency, rate: Decimal) -> Option<Decimal> {
    let p = money.amount().checked_mul(rate)?;
    Some(
        p.round_dp_with_strategy(base.minor_digits(), Rounding::HalfEven.into())
            .normalize(),
    )
}

fn decode_rate(r: Vec<Value>) -> Result<ExchangeRate> {
    let bad = |w: &str| Error::storage(format!("malformed exchange rate row: {w}"));
    let cur = |v: &Value, w: &str| {
        v.as_text()
            .and_then(|s| Currency::parse(s).ok())
            .ok_or_else(|| bad(w))
    };
    Ok(ExchangeRate {
        currency: cur(&r[0], "currency")?,
        base: cur(&r[1], "to_currency")?,
        effective_from: r[2]
            .as_text()
            .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            .ok_or_else(|| bad("effective_from"))?,
        id: ExchangeRateId::from_uuid(r[3].as_uuid().ok_or_else(|| bad("id"))?),
        rate: r[4]
            .as_text()
            .and_then(|s| Decimal::from_str_exact(s).ok())
            .ok_or_else(|| bad("rate"))?,
        updated_at: decode_timestamp(&r[6])?,
        version: r[7].as_int().ok_or_else(|| bad("version"))? as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crmkit_core::Role;
    use proptest::prelude::*;

    fn cur(c: &str) -> Currency {
        Currency::parse(c).unwrap()
    }

    #[test]
    fn max_rate_is_ten_to_the_twelve() {
        assert_eq!(MAX_RATE, Decimal::from(1_000_000_000_000i64));
    }

    #[test]
    fn banker_rounding_and_identity() {
        let eur = cur("EUR");
        let usd = cur("USD");
        let m = Money::parse("1.25", "USD").unwrap();
        // 1.25 × 0.5 = 0.625 → 0.62 (half to even)
        assert_eq!(
            convert_with(m, eur, Decimal::new(5, 1)).unwrap(),
            Money::parse("0.62", "EUR").unwrap()
        );
        // 1.25 × 0.7 = 0.875 → 0.88
        assert_eq!(
            convert_with(m, eur, Decimal::new(7, 1)).unwrap(),
            Money::parse("0.88", "EUR").unwrap()
        );
        // negative: -0.625 → -0.62
        let neg = Money::parse("-1.25", "USD").unwrap();
        assert_eq!(
            convert_with(neg, eur, Decimal::new(5, 1)).unwrap(),
            Money::parse("-0.62", "EUR").unwrap()
        );
        assert_eq!(convert_with(m, usd, Decimal::new(3, 0)).unwrap(), m);
        // JPY has no minor unit: 10.5 → 10, 11.5 → 12
        let jpy = cur("JPY");
        assert_eq!(
            convert_with(Money::parse("10.5", "USD").unwrap(), jpy, Decimal::ONE).unwrap(),
            Money::parse("10", "JPY").unwrap()
        );
        assert_eq!(
            convert_with(Money::parse("11.5", "USD").unwrap(), jpy, Decimal::ONE).unwrap(),
            Money::parse("12", "JPY").unwrap()
        );
    }

    #[test]
    fn largest_amount_with_a_long_rate_is_exact() {
        // 922337203685477.5807 × 0.999999999999 = 922337203684555.2435…
        let m = Money::parse("922337203685477.5807", "USD").unwrap();
        let r = Decimal::from_str_exact("0.999999999999").unwrap();
        let got = convert_with(m, cur("EUR"), r).unwrap();
        // exact: 922337203685477.5807 - 922.3372036854775807 = 922337203684555.2434963145224193
        assert_eq!(got, Money::parse("922337203684555.24", "EUR").unwrap());
        // too large for storage
        assert!(convert_with(m, cur("EUR"), Decimal::from(2)).is_err());
    }

    #[test]
    fn rate_checks() {
        let mut e = ValidationErrors::new();
        assert!(check_rate(&mut e, Decimal::ZERO).is_none());
        assert!(check_rate(&mut e, Decimal::new(-1, 0)).is_none());
        assert!(check_rate(&mut e, Decimal::new(1, 13)).is_none());
        assert!(check_rate(&mut e, MAX_RATE).is_none());
        assert_eq!(e.errors.len(), 4);
        assert!(e.errors.iter().all(|x| x.field == "rate"));
        let mut e = ValidationErrors::new();
        assert_eq!(
            check_rate(&mut e, Decimal::from_str_exact("1.500000000000").unwrap()),
            Some(Decimal::new(15, 1))
        );
        assert!(e.is_empty());
    }

    fn memory_ctx() -> (Currencies, Ctx) {
        let modules = crmkit_core::Modules::builder()
            .add(crmkit_contacts::ContactsModule)
            .add(crate::PipelineModule)
            .build()
            .unwrap();
        let store = Store::new(
            crmkit_core::memory::MemoryBackend::new((**modules.schema()).clone()),
            modules,
        );
        let ctx = Ctx::new(
            crmkit_core::TenantId::new(),
            crmkit_core::Actor::new(crmkit_core::UserId::new(), [Role::Admin], []),
        )
        .unwrap();
        (Currencies::new(&store).unwrap(), ctx)
    }

    proptest! {
        #[test]
        fn conversion_is_deterministic_and_equals_decimal(
            units in -10_000_000_000_000i64..10_000_000_000_000,
            rate_m in 1i64..1_000_000_000_000,
            rate_s in 0u32..=12,
            base in prop::sample::select(vec!["EUR", "JPY", "BHD", "USD"]),
        ) {
            let m = Money::from_storage_units(units, cur("GBP"));
            let rate = Decimal::new(rate_m, rate_s).normalize();
            let b = cur(base);
            let a = convert_with(m, b, rate);
            let again = convert_with(m, b, rate);
            prop_assert_eq!(&a.as_ref().ok(), &again.as_ref().ok());
            if let Some(reference) = convert_reference(m, b, rate) {
                // Decimal's product is exact while it fits 28 digits (true in this range).
                match a {
                    Ok(got) => prop_assert_eq!(got.amount(), reference),
                    // Only a result that storage cannot keep is refused.
                    Err(_) => prop_assert!(Money::new(reference, b).is_err()),
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn rate_for_a_date_is_the_latest_before_it(
            rates in proptest::collection::btree_map(0i64..60, 1i64..1_000_000, 0..8),
            probes in proptest::collection::vec(-5i64..70, 1..20),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let (x, ctx) = memory_ctx();
                let usd = cur("USD");
                x.set_base_currency(&ctx, cur("EUR")).await.unwrap();
                let start = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
                let day = |n: i64| start + chrono::Duration::days(n);
                for (d, r) in &rates {
                    x.set_rate(&ctx, usd, day(*d), Decimal::new(*r, 4)).await.unwrap();
                }
                for p in probes {
                    let brute = rates
                        .iter()
                        .filter(|(d, _)| **d <= p)
                        .max_by_key(|(d, _)| **d)
                        .map(|(_, r)| Decimal::new(*r, 4).normalize());
                    let got = x.rate_at(&ctx, usd, day(p)).await.ok().map(|r| r.rate);
                    assert_eq!(got, brute, "rate on day {p}");
                }
            });
        }
    }
}
