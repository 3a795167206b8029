//! Recurrence rules: validation and the next occurrence of a recurring task.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use crmkit_core::ValidationErrors;

use crate::model::{Due, Frequency, Recurrence, RecurrenceEnd};

/// Checks a recurrence (field names under `field`): interval and count at least 1, a
/// weekly rule with at least one weekday, a monthly day of 1 to 31, occurrence at least 1.
pub fn check(errs: &mut ValidationErrors, field: &str, r: &Recurrence) {
    if r.interval == 0 {
        errs.push(format!("{field}.interval"), "must be at least 1");
    }
    if r.occurrence == 0 {
        errs.push(format!("{field}.occurrence"), "must be at least 1");
    }
    match &r.frequency {
        Frequency::Daily => {}
        Frequency::Weekly { weekdays } => {
            if weekdays.is_empty() {
                errs.push(
                    format!("{field}.frequency.weekdays"),
                    "a weekly recurrence needs at least one weekday",
                );
            }
        }
        Frequency::Monthly { day } => {
            if !(1..=31).contains(day) {
                errs.push(format!("{field}.frequency.day"), "must be 1 to 31");
            }
        }
    }
    if let RecurrenceEnd::Count { count } = r.end {
        if count == 0 {
            errs.push(format!("{field}.end.count"), "must be at least 1");
        } else if r.occurrence > count {
            errs.push(
                format!("{field}.occurrence"),
                "is beyond the recurrence's count",
            );
        }
    }
}

fn last_day_of_month(y: i32, m: u32) -> u32 {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    NaiveDate::from_ymd_opt(ny, nm, 1)
        .and_then(|d| d.pred_opt())
        .map(|d| d.day())
        .unwrap_or(28)
}

/// The day after `d` on which the rule's next occurrence falls.
pub fn next_date(d: NaiveDate, r: &Recurrence) -> Option<NaiveDate> {
    let interval = r.interval.max(1);
    match &r.frequency {
        Frequency::Daily => d.checked_add_signed(Duration::days(i64::from(interval))),
        Frequency::Weekly { weekdays } => {
            if weekdays.is_empty() {
                return None;
            }
            let week_start = d - Duration::days(i64::from(d.weekday().num_days_from_monday()));
            let mut c = d;
            for _ in 0..(7 * (interval as usize) + 7) {
                c = c.succ_opt()?;
                let week = (c - week_start).num_days() / 7;
                if week % i64::from(interval) == 0 && weekdays.contains(&c.weekday()) {
                    return Some(c);
                }
            }
            None
        }
        Frequency::Monthly { day } => {
            let months = d.year() * 12 + d.month0() as i32 + interval as i32;
            let (y, m) = (months.div_euclid(12), months.rem_euclid(12) as u32 + 1);
            let day = u32::from(*day).min(last_day_of_month(y, m));
            NaiveDate::from_ymd_opt(y, m, day)
        }
    }
}

/// The local instant of `date` at `time` in `tz` (the earlier of an ambiguous time; a
/// time in a gap moves an hour later).
pub fn local_instant(tz: Tz, date: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
    let naive = date.and_time(time);
    tz.from_local_datetime(&naive)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(naive + Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
}

/// The due of the occurrence after `due` under `r`, and the recurrence it carries, or
/// `None` when the rule has ended (count reached, or the next day is after `until`).
pub fn next(due: &Due, r: &Recurrence) -> Option<(Due, Recurrence)> {
    let occurrence = r.occurrence + 1;
    if let RecurrenceEnd::Count { count } = r.end
        && occurrence > count
    {
        return None;
    }
    let (date, next_due) = match due {
        Due::Date { date } => {
            let n = next_date(*date, r)?;
            (n, Due::Date { date: n })
        }
        Due::At { at, time_zone } => {
            let tz: Tz = time_zone.parse().ok()?;
            let local = at.with_timezone(&tz);
            let n = next_date(local.date_naive(), r)?;
            let at = local_instant(tz, n, local.time())?;
            (
                n,
                Due::At {
                    at,
                    time_zone: time_zone.clone(),
                },
            )
        }
    };
    if let RecurrenceEnd::Until { date: until } = r.end
        && date > until
    {
        return None;
    }
    Some((
        next_due,
        Recurrence {
            occurrence,
            ..r.clone()
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Weekday;

    fn rec(frequency: Frequency, interval: u32, end: RecurrenceEnd) -> Recurrence {
        Recurrence {
            frequency,
            interval,
            end,
            occurrence: 1,
        }
    }

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn monthly_uses_last_day_of_short_months() {
        let r = rec(
            Frequency::Monthly { day: 31 },
            1,
            RecurrenceEnd::Count { count: 10 },
        );
        assert_eq!(next_date(d(2027, 1, 31), &r), Some(d(2027, 2, 28)));
        assert_eq!(next_date(d(2027, 2, 28), &r), Some(d(2027, 3, 31)));
        assert_eq!(next_date(d(2028, 1, 31), &r), Some(d(2028, 2, 29)));
        assert_eq!(next_date(d(2027, 12, 31), &r), Some(d(2028, 1, 31)));
    }

    #[test]
    fn weekly_on_weekdays_with_interval() {
        let r = rec(
            Frequency::Weekly {
                weekdays: vec![Weekday::Mon, Weekday::Thu],
            },
            2,
            RecurrenceEnd::Count { count: 10 },
        );
        // 2027-03-01 is a Monday.
        assert_eq!(next_date(d(2027, 3, 1), &r), Some(d(2027, 3, 4)));
        assert_eq!(next_date(d(2027, 3, 4), &r), Some(d(2027, 3, 15)));
    }

    #[test]
    fn count_and_until_end_it() {
        let mut r = rec(Frequency::Daily, 1, RecurrenceEnd::Count { count: 2 });
        let due = Due::Date {
            date: d(2027, 1, 1),
        };
        let (n, r2) = next(&due, &r).unwrap();
        assert_eq!(
            n,
            Due::Date {
                date: d(2027, 1, 2)
            }
        );
        assert!(next(&n, &r2).is_none());
        r.end = RecurrenceEnd::Until {
            date: d(2027, 1, 1),
        };
        assert!(next(&due, &r).is_none());
    }

    #[test]
    fn instants_keep_local_time_across_dst() {
        let r = rec(Frequency::Daily, 1, RecurrenceEnd::Count { count: 5 });
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let at = local_instant(
            tz,
            d(2027, 3, 27),
            NaiveTime::from_hms_opt(9, 0, 0).unwrap(),
        )
        .unwrap();
        let due = Due::At {
            at,
            time_zone: "Europe/Berlin".into(),
        };
        let (Due::At { at: n, .. }, _) = next(&due, &r).unwrap() else {
            panic!()
        };
        assert_eq!(
            n.with_timezone(&tz).time(),
            NaiveTime::from_hms_opt(9, 0, 0).unwrap()
        );
        assert_eq!(n - at, Duration::hours(23));
    }
}
