//! Offsets in time: minutes, hours, calendar days, and working days of an SLA calendar.

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use crmkit_core::{Ctx, Error, Result, Store};
use serde_json::Value as Json;

use crate::model::{Offset, TimeUnit};

/// The longest span an offset may reach (so that no arithmetic overflows).
const MAX_DAYS: i64 = 3660;

/// `from` moved forward by `offset`. Business days are the working days of the offset's
/// calendar (a day with working hours, after its dated exceptions) in its time zone: N
/// business days later is the same local time on the N-th working day after `from`'s
/// local date (on a DST gap, the first instant after it). The calendar is read with
/// `ctx`'s access, through the generic record API (kind `sla_calendar`).
pub(crate) async fn after(
    store: &Store,
    ctx: &Ctx,
    from: DateTime<Utc>,
    offset: &Offset,
) -> Result<DateTime<Utc>> {
    shift(store, ctx, from, offset, 1).await
}

pub(crate) async fn shift(
    store: &Store,
    ctx: &Ctx,
    from: DateTime<Utc>,
    offset: &Offset,
    sign: i64,
) -> Result<DateTime<Utc>> {
    let n = i64::from(offset.amount);
    let span = match offset.unit {
        TimeUnit::Minutes => TimeDelta::minutes(n.min(MAX_DAYS * 1440)),
        TimeUnit::Hours => TimeDelta::hours(n.min(MAX_DAYS * 24)),
        TimeUnit::Days => TimeDelta::days(n.min(MAX_DAYS)),
        TimeUnit::BusinessDays => {
            let id = offset.calendar.ok_or_else(|| {
                Error::validation("offset.calendar", "business days need a calendar")
            })?;
            let cal = store
                .records()
                .get(ctx, "sla_calendar", id.as_uuid())
                .await?;
            let cal = WorkingDays::from_json(cal.get("calendar").unwrap_or(&Json::Null))?;
            return cal.shift(from, n.min(MAX_DAYS), sign);
        }
    };
    from.checked_add_signed(span * sign as i32)
        .ok_or_else(|| Error::validation("offset", "reaches past the supported dates"))
}

/// Which days of a calendar are working days.
pub(crate) struct WorkingDays {
    tz: Tz,
    weekly: [bool; 7],
    exceptions: std::collections::BTreeMap<NaiveDate, bool>,
}

const DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

fn non_empty(v: Option<&Json>) -> bool {
    v.and_then(Json::as_array).is_some_and(|a| !a.is_empty())
}

impl WorkingDays {
    /// From a calendar's JSON (`{"time_zone", "hours": {"monday": [..], ..},
    /// "exceptions": {"2026-12-25": [], ..}}`).
    pub(crate) fn from_json(v: &Json) -> Result<WorkingDays> {
        let bad = || Error::storage("a calendar without a valid time zone");
        let tz: Tz = v
            .get("time_zone")
            .and_then(Json::as_str)
            .ok_or_else(bad)?
            .parse()
            .map_err(|_| bad())?;
        let hours = v.get("hours");
        let mut weekly = [false; 7];
        for (i, d) in DAYS.iter().enumerate() {
            weekly[i] = non_empty(hours.and_then(|h| h.get(*d)));
        }
        let mut exceptions = std::collections::BTreeMap::new();
        if let Some(ex) = v.get("exceptions").and_then(Json::as_object) {
            for (date, hours) in ex {
                if let Ok(d) = NaiveDate::parse_from_str(date, "%Y-%m-%d") {
                    exceptions.insert(d, non_empty(Some(hours)));
                }
            }
        }
        Ok(WorkingDays {
            tz,
            weekly,
            exceptions,
        })
    }

    fn works(&self, d: NaiveDate) -> bool {
        self.exceptions
            .get(&d)
            .copied()
            .unwrap_or(self.weekly[d.weekday().num_days_from_monday() as usize])
    }

    /// `from` moved by `n` working days (`sign` 1: forward, -1: back), same local time.
    pub(crate) fn shift(&self, from: DateTime<Utc>, n: i64, sign: i64) -> Result<DateTime<Utc>> {
        if !self.weekly.iter().any(|w| *w) && n > 0 {
            return Err(Error::validation(
                "offset.calendar",
                "the calendar has no working days",
            ));
        }
        let local = from.with_timezone(&self.tz).naive_local();
        let mut date = local.date();
        let mut left = n;
        let mut steps = 0;
        while left > 0 {
            date = if sign > 0 {
                date.succ_opt()
            } else {
                date.pred_opt()
            }
            .ok_or_else(|| Error::validation("offset", "reaches past the supported dates"))?;
            if self.works(date) {
                left -= 1;
            }
            steps += 1;
            if steps > MAX_DAYS * 2 {
                return Err(Error::validation(
                    "offset.calendar",
                    "the calendar has too few working days for this offset",
                ));
            }
        }
        let target = date.and_time(local.time());
        Ok(match self.tz.from_local_datetime(&target) {
            LocalResult::Single(t) => t.with_timezone(&Utc),
            LocalResult::Ambiguous(a, _) => a.with_timezone(&Utc),
            // A DST gap: the first local instant after it (gaps are at most an hour or
            // two; step by minutes until the local time exists).
            LocalResult::None => {
                let mut t = target;
                loop {
                    t += TimeDelta::minutes(1);
                    if let Some(x) = self.tz.from_local_datetime(&t).earliest() {
                        break x.with_timezone(&Utc);
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cal() -> WorkingDays {
        WorkingDays::from_json(&json!({
            "time_zone": "Europe/Berlin",
            "hours": {"monday": ["09:00-17:00"], "tuesday": ["09:00-17:00"],
                      "wednesday": ["09:00-17:00"], "thursday": ["09:00-17:00"],
                      "friday": ["09:00-17:00"]},
            "exceptions": {"2026-12-25": [], "2026-12-26": ["10:00-12:00"]}
        }))
        .unwrap()
    }

    #[test]
    fn business_days_skip_weekends_and_holidays() {
        let c = cal();
        // Thursday 2026-12-24 10:00 Berlin (09:00 UTC): +1 business day skips the
        // Christmas holiday (Fri), Saturday 26th is an exceptional working day.
        let from = Utc.with_ymd_and_hms(2026, 12, 24, 9, 0, 0).unwrap();
        assert_eq!(
            c.shift(from, 1, 1).unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 26, 9, 0, 0).unwrap()
        );
        assert_eq!(
            c.shift(from, 2, 1).unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 28, 9, 0, 0).unwrap()
        );
        assert_eq!(
            c.shift(from, 1, -1).unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 23, 9, 0, 0).unwrap()
        );
    }

    #[test]
    fn business_days_keep_local_time_across_dst() {
        let c = cal();
        // Friday 2027-03-26 10:00 CET (09:00 UTC) + 1 business day = Monday 29th 10:00
        // CEST (08:00 UTC): the same local time after the change to summer time.
        let from = Utc.with_ymd_and_hms(2027, 3, 26, 9, 0, 0).unwrap();
        assert_eq!(
            c.shift(from, 1, 1).unwrap(),
            Utc.with_ymd_and_hms(2027, 3, 29, 8, 0, 0).unwrap()
        );
    }
}
