//! Report periods and time buckets in the tenant's time zone and fiscal year.
//!
//! A [`Period`] is a bounded, inclusive range of local dates (`from` ≤ `to`, years 1 to
//! 9999). An instant belongs to the local date it falls on in the tenant's time zone, so
//! a deal won at 23:59:59 local time on the last day of a quarter belongs to that quarter
//! whatever the UTC offset is that day; [`Period::instants`] gives the half-open UTC range
//! `[start of from, start of the day after to)`.
//!
//! A [`Bucket`] cuts a period into days, ISO weeks (Monday to Sunday, labelled
//! `2026-W05` by the ISO week-numbering year), calendar months (`2026-03`), fiscal
//! quarters and fiscal years. The fiscal year starts on the first day of the tenant's
//! fiscal start month and is named after the calendar year it ends in (`FY2027` starts
//! on 2026-04-01 when the year starts in April; with January it is the calendar year);
//! its quarters are the three-month blocks from its start (`FY2027-Q1` = April to June).
//! Buckets are whole (their `start` and `end` are the bucket's own first and last days,
//! which may lie outside the period); a report counts only what lies inside the period.

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use crmkit_core::{Error, Result, ValidationErrors};
use serde::{Deserialize, Serialize};

/// The most buckets one report may span (a Validation error on `bucket` beyond it).
pub const MAX_BUCKETS: usize = 400;

/// A bounded, inclusive range of local dates, `from` ≤ `to`, within the years 1 to 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Period {
    from: NaiveDate,
    to: NaiveDate,
}

impl Period {
    /// The period from `from` to `to`, both included. An inverted period is a Validation
    /// error on `period` ("from is after to"); a date outside the years 1 to 9999 one on
    /// `period.from` / `period.to`.
    pub fn new(from: NaiveDate, to: NaiveDate) -> Result<Period> {
        let mut errs = ValidationErrors::new();
        if let Err(r) = crmkit_core::text::check_date(from) {
            errs.push("period.from", r);
        }
        if let Err(r) = crmkit_core::text::check_date(to) {
            errs.push("period.to", r);
        }
        errs.into_result()?;
        if from > to {
            return Err(Error::validation(
                "period",
                format!("from ({from}) is after to ({to})"),
            ));
        }
        Ok(Period { from, to })
    }

    /// The first day.
    pub fn from(&self) -> NaiveDate {
        self.from
    }

    /// The last day (included).
    pub fn to(&self) -> NaiveDate {
        self.to
    }

    /// Whether the local date `d` is in the period.
    pub fn contains(&self, d: NaiveDate) -> bool {
        self.from <= d && d <= self.to
    }

    /// The half-open UTC range of the period's instants in `tz`: from the first instant of
    /// `from` to the first instant of the day after `to`.
    pub fn instants(&self, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            day_start(tz, self.from),
            day_start(tz, self.to + Days::new(1)),
        )
    }

    /// The UTC bounds of `buckets` (consecutive, as [`Bucket::cover`] gives them) within
    /// the period in `tz`: each bucket's first instant (the first clipped to the period's
    /// start), then the instant after the last (clipped to the period's end). Bucket `i`
    /// is `[bounds[i], bounds[i + 1])`, as the storage contract's `Buckets` reads them.
    pub fn bucket_bounds(&self, buckets: &[BucketKey], tz: Tz) -> Vec<DateTime<Utc>> {
        let mut bounds: Vec<DateTime<Utc>> = buckets
            .iter()
            .map(|b| day_start(tz, b.start.max(self.from)))
            .collect();
        if let Some(last) = buckets.last() {
            bounds.push(day_start(tz, last.end.min(self.to) + Days::new(1)));
        }
        bounds
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            from: NaiveDate,
            to: NaiveDate,
        }
        let r = Raw::deserialize(d)?;
        Period::new(r.from, r.to).map_err(serde::de::Error::custom)
    }
}

/// The first instant of the local date `d` in `tz` (the first valid local time of the day
/// when midnight falls into a DST gap).
pub fn day_start(tz: Tz, d: NaiveDate) -> DateTime<Utc> {
    let mut t = d.and_time(NaiveTime::MIN);
    // Gaps last at most a few hours; step by a minute until the local time exists.
    for _ in 0..(24 * 60) {
        if let Some(x) = tz.from_local_datetime(&t).earliest() {
            return x.with_timezone(&Utc);
        }
        t += chrono::Duration::minutes(1);
    }
    d.and_time(NaiveTime::MIN).and_utc()
}

/// The local date of instant `t` in `tz`.
pub fn local_date(tz: Tz, t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&tz).date_naive()
}

/// A time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    /// A local calendar day (`2026-03-31`).
    Day,
    /// An ISO week, Monday to Sunday (`2026-W05`, by ISO week-numbering year).
    Week,
    /// A calendar month (`2026-03`).
    Month,
    /// A fiscal quarter (`FY2026-Q1`).
    Quarter,
    /// A fiscal year (`FY2026`).
    Year,
}

impl Bucket {
    /// Every bucket's JSON name.
    pub const NAMES: &'static [&'static str] = &["day", "week", "month", "quarter", "year"];

    /// The bucket that contains the local date `d`, for a fiscal year starting on the
    /// first of month `fiscal_start` (1-12; anything else is taken as 1).
    pub fn of(self, d: NaiveDate, fiscal_start: u32) -> BucketKey {
        let fs = if (1..=12).contains(&fiscal_start) {
            fiscal_start
        } else {
            1
        };
        match self {
            Bucket::Day => BucketKey {
                label: d.format("%Y-%m-%d").to_string(),
                start: d,
                end: d,
            },
            Bucket::Week => {
                let w = d.iso_week();
                let start = d - Days::new(u64::from(d.weekday().num_days_from_monday()));
                BucketKey {
                    label: format!("{:04}-W{:02}", w.year(), w.week()),
                    start,
                    end: start + Days::new(6),
                }
            }
            Bucket::Month => {
                let start = first_of(d.year(), d.month());
                BucketKey {
                    label: d.format("%Y-%m").to_string(),
                    start,
                    end: add_months(start, 1) - Days::new(1),
                }
            }
            Bucket::Quarter | Bucket::Year => {
                // Months since the fiscal year's start month, 0-11.
                let offset = (d.month() + 12 - fs) % 12;
                let fy_start_year = if d.month() >= fs {
                    d.year()
                } else {
                    d.year() - 1
                };
                let fy_start = first_of(fy_start_year, fs);
                let fy_end = add_months(fy_start, 12) - Days::new(1);
                let fy = fy_end.year();
                if self == Bucket::Year {
                    BucketKey {
                        label: format!("FY{fy:04}"),
                        start: fy_start,
                        end: fy_end,
                    }
                } else {
                    let q = offset / 3;
                    let start = add_months(fy_start, q * 3);
                    BucketKey {
                        label: format!("FY{fy:04}-Q{}", q + 1),
                        start,
                        end: add_months(start, 3) - Days::new(1),
                    }
                }
            }
        }
    }

    /// The buckets that cover `period`, in order (the first contains `from`, the last
    /// `to`). More than [`MAX_BUCKETS`] is a Validation error on `bucket`.
    pub fn cover(self, period: &Period, fiscal_start: u32) -> Result<Vec<BucketKey>> {
        let mut out = vec![];
        let mut d = period.from;
        loop {
            let b = self.of(d, fiscal_start);
            let next = b.end + Days::new(1);
            out.push(b);
            if out.len() > MAX_BUCKETS {
                return Err(Error::validation(
                    "bucket",
                    format!("the period spans more than {MAX_BUCKETS} buckets"),
                ));
            }
            if next > period.to {
                return Ok(out);
            }
            d = next;
        }
    }
}

/// One bucket: its label and its first and last local days.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BucketKey {
    /// `2026-03-31`, `2026-W05`, `2026-03`, `FY2026-Q1` or `FY2026`.
    pub label: String,
    /// Its first day.
    pub start: NaiveDate,
    /// Its last day (included).
    pub end: NaiveDate,
}

impl BucketKey {
    /// Whether the local date `d` is in the bucket.
    pub fn contains(&self, d: NaiveDate) -> bool {
        self.start <= d && d <= self.end
    }
}

fn first_of(year: i32, month: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(NaiveDate::MIN)
}

fn add_months(d: NaiveDate, n: u32) -> NaiveDate {
    d.checked_add_months(chrono::Months::new(n))
        .unwrap_or(NaiveDate::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The brute-force bucket of a day: walk back day by day to the bucket's first day
    /// by the plain definitions, then forward to its last.
    fn oracle(b: Bucket, d: NaiveDate, fs: u32) -> (NaiveDate, NaiveDate) {
        let is_start = |x: NaiveDate| match b {
            Bucket::Day => true,
            Bucket::Week => x.weekday() == chrono::Weekday::Mon,
            Bucket::Month => x.day() == 1,
            Bucket::Quarter => x.day() == 1 && (x.month() + 12 - fs).is_multiple_of(3),
            Bucket::Year => x.day() == 1 && x.month() == fs,
        };
        let mut s = d;
        while !is_start(s) {
            s = s.pred_opt().expect("in range");
        }
        let mut e = d;
        while !is_start(e.succ_opt().expect("in range")) {
            e = e.succ_opt().expect("in range");
        }
        (s, e)
    }

    fn any_bucket() -> impl Strategy<Value = Bucket> {
        prop_oneof![
            Just(Bucket::Day),
            Just(Bucket::Week),
            Just(Bucket::Month),
            Just(Bucket::Quarter),
            Just(Bucket::Year),
        ]
    }

    fn any_date() -> impl Strategy<Value = NaiveDate> {
        (1990i32..2060, 1u32..=366).prop_map(|(y, o)| {
            NaiveDate::from_yo_opt(y, o)
                .unwrap_or_else(|| NaiveDate::from_yo_opt(y, 365).expect("day"))
        })
    }

    proptest! {
        #[test]
        fn a_bucket_equals_the_brute_force_one(b in any_bucket(), d in any_date(), fs in 1u32..=12) {
            let k = b.of(d, fs);
            prop_assert_eq!((k.start, k.end), oracle(b, d, fs));
            prop_assert!(k.contains(d));
            // Every day of the bucket has the same bucket.
            prop_assert_eq!(b.of(k.start, fs), k.clone());
            prop_assert_eq!(b.of(k.end, fs), k.clone());
            if b == Bucket::Year || b == Bucket::Quarter {
                // The fiscal year is named after the year it ends in.
                let fy_end = Bucket::Year.of(d, fs).end;
                let prefix = format!("FY{:04}", fy_end.year());
                prop_assert!(k.label.starts_with(&prefix), "{} vs {}", k.label, prefix);
            }
        }

        #[test]
        fn buckets_cover_a_period_exactly_once(b in any_bucket(), d in any_date(), len in 0u64..400, fs in 1u32..=12) {
            let p = Period::new(d, d + Days::new(len)).expect("period");
            let Ok(cover) = b.cover(&p, fs) else {
                prop_assert_eq!(b, Bucket::Day);
                return Ok(());
            };
            let mut day = p.from();
            while day <= p.to() {
                let n = cover.iter().filter(|k| k.contains(day)).count();
                prop_assert_eq!(n, 1, "{} in {} buckets", day, n);
                day = day.succ_opt().expect("day");
            }
            prop_assert!(cover.windows(2).all(|w| w[0].end + Days::new(1) == w[1].start));
        }
    }

    #[test]
    fn labels() {
        let d = NaiveDate::from_ymd_opt(2026, 3, 31).expect("date");
        assert_eq!(Bucket::Day.of(d, 1).label, "2026-03-31");
        assert_eq!(Bucket::Week.of(d, 1).label, "2026-W14");
        assert_eq!(Bucket::Month.of(d, 1).label, "2026-03");
        assert_eq!(Bucket::Quarter.of(d, 1).label, "FY2026-Q1");
        assert_eq!(Bucket::Quarter.of(d, 4).label, "FY2026-Q4");
        assert_eq!(Bucket::Year.of(d, 4).label, "FY2026");
        let apr = NaiveDate::from_ymd_opt(2026, 4, 1).expect("date");
        assert_eq!(Bucket::Year.of(apr, 4).label, "FY2027");
        assert_eq!(Bucket::Quarter.of(apr, 4).label, "FY2027-Q1");
        // 2027-01-01 is in ISO week 53 of 2026.
        let jan = NaiveDate::from_ymd_opt(2027, 1, 1).expect("date");
        assert_eq!(Bucket::Week.of(jan, 1).label, "2026-W53");
    }

    #[test]
    fn periods_are_bounded_and_ordered() {
        let a = NaiveDate::from_ymd_opt(2026, 1, 2).expect("date");
        let b = NaiveDate::from_ymd_opt(2026, 1, 1).expect("date");
        let e = Period::new(a, b).expect_err("inverted");
        assert_eq!(
            e.validation_errors().expect("validation").errors[0].field,
            "period"
        );
        let far = NaiveDate::from_ymd_opt(10000, 1, 1).expect("date");
        let e = Period::new(a, far).expect_err("year 10000");
        assert_eq!(
            e.validation_errors().expect("validation").errors[0].field,
            "period.to"
        );
        let e = Period::new(b, a + Days::new(3000)).and_then(|p| Bucket::Day.cover(&p, 1));
        assert_eq!(
            e.expect_err("too many")
                .validation_errors()
                .expect("validation")
                .errors[0]
                .field,
            "bucket"
        );
    }

    #[test]
    fn day_starts_across_dst() {
        let tz: Tz = "America/Sao_Paulo".parse().expect("zone");
        // Brazil's DST began at midnight on 2018-11-04: the day starts at 01:00 local.
        let d = NaiveDate::from_ymd_opt(2018, 11, 4).expect("date");
        let s = day_start(tz, d);
        assert_eq!(local_date(tz, s), d);
        assert_eq!(s.with_timezone(&tz).format("%H:%M").to_string(), "01:00");
        let berlin: Tz = "Europe/Berlin".parse().expect("zone");
        let q = Period::new(
            NaiveDate::from_ymd_opt(2026, 1, 1).expect("date"),
            NaiveDate::from_ymd_opt(2026, 3, 31).expect("date"),
        )
        .expect("period");
        let (s, e) = q.instants(berlin);
        assert_eq!(s.to_rfc3339(), "2025-12-31T23:00:00+00:00");
        // Summer time began on 2026-03-29: the quarter ends at 22:00 UTC.
        assert_eq!(e.to_rfc3339(), "2026-03-31T22:00:00+00:00");
    }
}
