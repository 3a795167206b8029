//! Money: an exact decimal amount in an ISO 4217 currency.
//!
//! There are no arithmetic operators across currencies: [`Money::checked_add`] and friends
//! return [`Error::CurrencyMismatch`]. Rounding always names its strategy. Amounts are
//! stored as an integer count of 1/10 000 of the currency unit ([`Money::STORAGE_SCALE`]),
//! so that sums computed by any SQL backend are exact. Money displays with its currency's
//! minor units and parses back (`"12.50 EUR"`, `"1250 JPY"`, `"1.500 KWD"`).

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// An ISO 4217 currency code, validated against the standard's list.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    /// Parses a three-letter code (`"EUR"`); anything not in ISO 4217 is a Validation error.
    pub fn parse(code: &str) -> Result<Self> {
        iso_currency::Currency::from_code(code)
            .map(Currency)
            .ok_or_else(|| {
                Error::validation(
                    "currency",
                    format!("{code:?} is not an ISO 4217 currency code"),
                )
            })
    }

    /// The three-letter code.
    pub fn code(&self) -> &'static str {
        self.0.code()
    }

    /// Digits after the decimal point in the currency's minor unit (2 for EUR, 0 for JPY).
    pub fn minor_digits(&self) -> u32 {
        self.0.exponent().map(u32::from).unwrap_or(0)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Currency::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// How to round to a currency's minor unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// Half to even (banker's rounding).
    HalfEven,
    /// Half away from zero (commercial rounding).
    HalfUp,
    /// Towards zero.
    Down,
    /// Away from zero.
    Up,
}

impl From<Rounding> for RoundingStrategy {
    fn from(r: Rounding) -> Self {
        match r {
            Rounding::HalfEven => RoundingStrategy::MidpointNearestEven,
            Rounding::HalfUp => RoundingStrategy::MidpointAwayFromZero,
            Rounding::Down => RoundingStrategy::ToZero,
            Rounding::Up => RoundingStrategy::AwayFromZero,
        }
    }
}

/// An exact amount of one currency.
///
/// Deserialising goes through [`Money::new`]: the amount is normalised (`"1000.50"` reads
/// as `1000.5`, as storage gives it back) and one that storage cannot keep (more than
/// [`Money::STORAGE_SCALE`] fractional digits, or too large) is refused, so a JSON body is
/// held to the same rules as the typed constructors.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "MoneyRepr")]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

/// The serialised form of [`Money`], checked by [`Money::new`] when read.
#[derive(Deserialize)]
struct MoneyRepr {
    amount: Decimal,
    currency: Currency,
}

impl TryFrom<MoneyRepr> for Money {
    type Error = String;
    fn try_from(r: MoneyRepr) -> std::result::Result<Self, String> {
        Money::new(r.amount, r.currency).map_err(|e| match e {
            Error::Validation(v) => v
                .errors
                .iter()
                .map(|f| format!("{}: {}", f.field, f.reason))
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        })
    }
}

impl Money {
    /// Digits after the decimal point that storage keeps (amounts are stored as an integer
    /// count of 10^-4 units).
    pub const STORAGE_SCALE: u32 = 4;

    /// Money from an amount and a currency. The amount may carry at most
    /// [`Self::STORAGE_SCALE`] fractional digits and must fit storage.
    pub fn new(amount: Decimal, currency: Currency) -> Result<Self> {
        let m = Money {
            amount: amount.normalize(),
            currency,
        };
        m.to_storage_units()?;
        Ok(m)
    }

    /// Parses an amount and a currency code (`Money::parse("1250.50", "EUR")`).
    pub fn parse(amount: &str, currency: &str) -> Result<Self> {
        let c = Currency::parse(currency)?;
        let a = Decimal::from_str_exact(amount.trim()).map_err(|_| {
            Error::validation("amount", format!("{amount:?} is not a decimal number"))
        })?;
        Money::new(a, c)
    }

    /// Zero in `currency`.
    pub fn zero(currency: Currency) -> Self {
        Money {
            amount: Decimal::ZERO,
            currency,
        }
    }

    /// The amount.
    pub fn amount(&self) -> Decimal {
        self.amount
    }

    /// The currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// Whether the amount is below zero.
    pub fn is_negative(&self) -> bool {
        self.amount.is_sign_negative() && !self.amount.is_zero()
    }

    fn same_currency(&self, other: &Money) -> Result<()> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(Error::CurrencyMismatch {
                left: self.currency.code().into(),
                right: other.currency.code().into(),
            })
        }
    }

    /// `self + other`; different currencies are a CurrencyMismatch error.
    pub fn checked_add(&self, other: &Money) -> Result<Money> {
        self.same_currency(other)?;
        let sum = self
            .amount
            .checked_add(other.amount)
            .ok_or_else(|| Error::validation("amount", "sum overflows"))?;
        Money::new(sum, self.currency)
    }

    /// `self - other`; different currencies are a CurrencyMismatch error.
    pub fn checked_sub(&self, other: &Money) -> Result<Money> {
        self.same_currency(other)?;
        let d = self
            .amount
            .checked_sub(other.amount)
            .ok_or_else(|| Error::validation("amount", "difference overflows"))?;
        Money::new(d, self.currency)
    }

    /// `self * factor`, rounded to storage scale with `rounding`.
    pub fn checked_mul(&self, factor: Decimal, rounding: Rounding) -> Result<Money> {
        let p = self
            .amount
            .checked_mul(factor)
            .ok_or_else(|| Error::validation("amount", "product overflows"))?
            .round_dp_with_strategy(Self::STORAGE_SCALE, rounding.into());
        Money::new(p, self.currency)
    }

    /// Compares two amounts of the same currency.
    pub fn checked_cmp(&self, other: &Money) -> Result<std::cmp::Ordering> {
        self.same_currency(other)?;
        Ok(self.amount.cmp(&other.amount))
    }

    /// Rounds to the currency's minor unit with `rounding`.
    pub fn round(&self, rounding: Rounding) -> Money {
        Money {
            amount: self
                .amount
                .round_dp_with_strategy(self.currency.minor_digits(), rounding.into())
                .normalize(),
            currency: self.currency,
        }
    }

    /// Sums amounts; an empty slice sums to zero in `currency`; any other currency is a
    /// CurrencyMismatch error.
    pub fn sum<'a>(
        currency: Currency,
        items: impl IntoIterator<Item = &'a Money>,
    ) -> Result<Money> {
        items
            .into_iter()
            .try_fold(Money::zero(currency), |acc, m| acc.checked_add(m))
    }

    /// Splits the amount (rounded to minor units) by `ratios` without losing a cent: the
    /// remainder goes one minor unit at a time to the first parts.
    pub fn allocate(&self, ratios: &[u32]) -> Result<Vec<Money>> {
        let total: u64 = ratios.iter().map(|&r| u64::from(r)).sum();
        if ratios.is_empty() || total == 0 {
            return Err(Error::validation(
                "ratios",
                "need at least one ratio above zero",
            ));
        }
        let digits = self.currency.minor_digits();
        let unit = Decimal::new(1, digits);
        let whole = self.round(Rounding::HalfEven).amount;
        let mut parts: Vec<Decimal> = ratios
            .iter()
            .map(|&r| {
                (whole * Decimal::from(r) / Decimal::from(total))
                    .round_dp_with_strategy(digits, RoundingStrategy::ToZero)
            })
            .collect();
        let mut rest = whole - parts.iter().copied().sum::<Decimal>();
        let step = if rest.is_sign_negative() { -unit } else { unit };
        let mut i = 0;
        let n = parts.len();
        while !rest.is_zero() {
            parts[i % n] += step;
            rest -= step;
            i += 1;
        }
        parts
            .into_iter()
            .map(|a| Money::new(a, self.currency))
            .collect()
    }

    /// The amount as an integer count of 10^-4 units (how storage keeps it).
    pub fn to_storage_units(&self) -> Result<i64> {
        decimal_to_units(self.amount, "amount")
    }

    /// Money from storage units.
    pub fn from_storage_units(units: i64, currency: Currency) -> Money {
        Money {
            amount: Decimal::new(units, Self::STORAGE_SCALE).normalize(),
            currency,
        }
    }
}

/// A decimal as an integer count of 10^-4 (the storage form of decimals and money).
/// More fractional digits, or a value beyond ±922 337 203 685 477, is a Validation error.
pub fn decimal_to_units(d: Decimal, field: &str) -> Result<i64> {
    let d = d.normalize();
    if d.scale() > Money::STORAGE_SCALE {
        return Err(Error::validation(
            field,
            format!(
                "has more than {} digits after the decimal point",
                Money::STORAGE_SCALE
            ),
        ));
    }
    let scaled = d
        .checked_mul(Decimal::from(10_000))
        .ok_or_else(|| Error::validation(field, "is too large"))?;
    i64::try_from(scaled).map_err(|_| Error::validation(field, "is too large"))
}

/// A decimal from storage units.
pub fn units_to_decimal(units: i64) -> Decimal {
    Decimal::new(units, Money::STORAGE_SCALE).normalize()
}

impl Money {
    /// Digits after the decimal point that [`Display`](fmt::Display) writes: the
    /// currency's minor digits, or more when the amount is more precise than its minor
    /// unit (never fewer than needed: the text is the exact amount).
    pub fn display_digits(&self) -> u32 {
        self.currency
            .minor_digits()
            .max(self.amount.normalize().scale())
    }
}

/// `<amount> <code>` with the currency's minor units: `12.50 EUR`, `1250 JPY`,
/// `1.500 KWD`, `-0.05 USD`.
///
/// The amount is always exact: one more precise than the currency's minor unit (money is
/// kept to 10^-4) shows the digits it needs, `12.505 EUR`, `1250.5 JPY`; it is never
/// rounded here (round explicitly with [`Money::round`] to show minor units only). The
/// text parses back to the same value with [`str::parse`] (see [`FromStr`] for `Money`).
/// Width, fill and alignment flags apply to the whole text (`{:>12}`).
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut amount = self.amount.normalize();
        // At most STORAGE_SCALE (4) digits for a valid Money, so rescaling never overflows.
        amount.rescale(self.display_digits());
        f.pad(&format!("{amount} {}", self.currency))
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Parses what [`Display`](fmt::Display) writes: an amount, one or more spaces and an
/// ISO 4217 code (`"12.50 EUR"`). The rules of [`Money::parse`] apply to each part.
impl FromStr for Money {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (amount, code) = s.trim().split_once(' ').ok_or_else(|| {
            Error::validation(
                "money",
                format!("{s:?} is not an amount and a currency code (\"12.50 EUR\")"),
            )
        })?;
        Money::parse(amount, code.trim_start())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal::prelude::*;

    fn eur(s: &str) -> Money {
        Money::parse(s, "EUR").unwrap()
    }

    #[test]
    fn currencies_are_iso_4217() {
        assert_eq!(Currency::parse("EUR").unwrap().minor_digits(), 2);
        assert_eq!(Currency::parse("JPY").unwrap().minor_digits(), 0);
        assert!(Currency::parse("XXY").is_err());
        assert!(Currency::parse("eur'; --").is_err());
    }

    #[test]
    fn no_cross_currency_arithmetic() {
        let usd = Money::parse("1", "USD").unwrap();
        assert!(matches!(
            eur("1").checked_add(&usd),
            Err(Error::CurrencyMismatch { .. })
        ));
        assert_eq!(
            eur("1.10").checked_add(&eur("2.205")).unwrap(),
            eur("3.305")
        );
    }

    #[test]
    fn deserialising_normalises_and_checks() {
        let m: Money = serde_json::from_str(r#"{"amount": "1000.50", "currency": "EUR"}"#).unwrap();
        assert_eq!(m, Money::parse("1000.5", "EUR").unwrap());
        assert_eq!(serde_json::to_value(m).unwrap()["amount"], "1000.5");
        assert!(
            serde_json::from_str::<Money>(r#"{"amount": "1.123456", "currency": "EUR"}"#).is_err()
        );
        assert!(
            serde_json::from_str::<Money>(
                r#"{"amount": "99999999999999999999999", "currency": "EUR"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn rejects_what_storage_cannot_keep() {
        assert!(Money::parse("1.00001", "EUR").is_err());
        assert!(Money::parse("1e40", "EUR").is_err());
        assert!(Money::parse("NaN", "EUR").is_err());
        assert!(Money::parse("99999999999999999999999999", "EUR").is_err());
    }

    #[test]
    fn rounding_names_its_strategy() {
        assert_eq!(eur("2.345").round(Rounding::HalfEven), eur("2.34"));
        assert_eq!(eur("2.345").round(Rounding::HalfUp), eur("2.35"));
        assert_eq!(eur("2.349").round(Rounding::Down), eur("2.34"));
    }

    #[test]
    fn allocate_keeps_every_cent() {
        let parts = eur("100").allocate(&[1, 1, 1]).unwrap();
        assert_eq!(parts, vec![eur("33.34"), eur("33.33"), eur("33.33")]);
    }

    fn money(s: &str, code: &str) -> Money {
        Money::parse(s, code).unwrap()
    }

    #[test]
    fn display_shows_the_minor_units() {
        assert_eq!(eur("12.5").to_string(), "12.50 EUR");
        assert_eq!(eur("12").to_string(), "12.00 EUR");
        assert_eq!(eur("0").to_string(), "0.00 EUR");
        assert_eq!(eur("-0.05").to_string(), "-0.05 EUR");
        assert_eq!(money("-3", "USD").to_string(), "-3.00 USD");
        assert_eq!(
            Money::zero(Currency::parse("EUR").unwrap()).to_string(),
            "0.00 EUR"
        );
        assert_eq!(money("1250", "JPY").to_string(), "1250 JPY");
        assert_eq!(money("1.5", "KWD").to_string(), "1.500 KWD");
        assert_eq!(money("7", "CLF").to_string(), "7.0000 CLF");
        assert_eq!(
            Money::from_storage_units(125_000, Currency::parse("USD").unwrap()).to_string(),
            "12.50 USD"
        );
        assert_eq!(format!("{:?}", eur("12.5")), "12.50 EUR");
        assert_eq!(format!("[{:>10}]", eur("1.5")), "[  1.50 EUR]");
    }

    #[test]
    fn display_keeps_digits_beyond_the_minor_unit() {
        assert_eq!(eur("12.505").to_string(), "12.505 EUR");
        assert_eq!(eur("0.0001").to_string(), "0.0001 EUR");
        assert_eq!(money("1250.5", "JPY").to_string(), "1250.5 JPY");
        assert_eq!(money("-1.0005", "KWD").to_string(), "-1.0005 KWD");
        assert_eq!(
            eur("2.345").round(Rounding::HalfEven).to_string(),
            "2.34 EUR"
        );
    }

    #[test]
    fn display_of_a_deserialized_amount_is_normalised() {
        // Serde does not go through Money::new, so trailing zeros may come in.
        let m: Money = serde_json::from_str(r#"{"amount":"12.5000","currency":"EUR"}"#).unwrap();
        assert_eq!(m.to_string(), "12.50 EUR");
    }

    #[test]
    fn parses_what_display_writes() {
        assert_eq!("12.50 EUR".parse::<Money>().unwrap(), eur("12.5"));
        assert_eq!(
            "  1250   JPY ".parse::<Money>().unwrap(),
            money("1250", "JPY")
        );
        assert!("12.50".parse::<Money>().is_err());
        assert!("12.50 XXY".parse::<Money>().is_err());
        assert!("EUR 12.50".parse::<Money>().is_err());
        assert!("1.00001 EUR".parse::<Money>().is_err());
    }

    proptest! {
        #[test]
        fn display_round_trips_with_minor_digits_or_more(
            units in -1_000_000_000_000i64..1_000_000_000_000,
            code in proptest::sample::select(vec!["EUR", "JPY", "KWD", "CLF", "USD", "BHD", "XAU"]),
        ) {
            let c = Currency::parse(code).unwrap();
            let m = Money::from_storage_units(units, c);
            let text = m.to_string();
            let (amount, shown_code) = text.split_once(' ').unwrap();
            prop_assert_eq!(shown_code, code);
            let decimals = amount.split_once('.').map_or(0, |(_, d)| d.len() as u32);
            prop_assert_eq!(decimals, c.minor_digits().max(m.amount().normalize().scale()));
            prop_assert!(decimals >= c.minor_digits());
            prop_assert_eq!(text.parse::<Money>().unwrap(), m);
        }

        #[test]
        fn storage_units_round_trip(units in -1_000_000_000_000i64..1_000_000_000_000) {
            let c = Currency::parse("USD").unwrap();
            let m = Money::from_storage_units(units, c);
            prop_assert_eq!(m.to_storage_units().unwrap(), units);
        }

        #[test]
        fn allocation_sums_to_the_rounded_whole(cents in -10_000_000i64..10_000_000, ratios in proptest::collection::vec(0u32..10, 1..6)) {
            prop_assume!(ratios.iter().any(|&r| r > 0));
            let m = Money::new(Decimal::new(cents, 2), Currency::parse("EUR").unwrap()).unwrap();
            let parts = m.allocate(&ratios).unwrap();
            let sum = Money::sum(m.currency(), parts.iter()).unwrap();
            prop_assert_eq!(sum.amount(), m.amount());
            prop_assert!(parts.iter().all(|p| p.amount().scale() <= 2));
            let _ = Decimal::from_i64(0);
        }
    }
}
