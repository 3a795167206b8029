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
            let off = i64::from(d.weekday().num_days_from_monday());
            let week_start = d.checked_sub_signed(Duration::days(off))?;
            // The first of the rule's weekdays in the week of `monday`, from its day `from`.
            let first = |monday: NaiveDate, from: i64| {
                (from..7)
                    .filter_map(|i| monday.checked_add_signed(Duration::days(i)))
                    .find(|c| weekdays.contains(&c.weekday()))
            };
            // Later this week, else in the week `interval` weeks on (computed, not walked
            // day by day: a huge interval would walk to the end of the calendar).
            first(week_start, off + 1).or_else(|| {
                let on = week_start.checked_add_signed(Duration::weeks(i64::from(interval)))?;
                first(on, 0)
            })
        }
        Frequency::Monthly { day } => {
            // The rule's day of the month `months` months after year 0 (64-bit: an
            // interval above i32::MAX must not wrap into the past).
            let on = |months: i64| {
                let y = i32::try_from(months.div_euclid(12)).ok()?;
                let m = months.rem_euclid(12) as u32 + 1;
                NaiveDate::from_ymd_opt(y, m, u32::from(*day).min(last_day_of_month(y, m)))
            };
            let this = i64::from(d.year()) * 12 + i64::from(d.month0());
            // Later this month when `d` is before the rule's day (a first due off the
            // rule's day), else `interval` months on.
            on(this)
                .filter(|c| *c > d)
                .or_else(|| on(this + i64::from(interval)))
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

    /// Monthly on `day`, every `interval` months, ten times.
    fn monthly(day: u8, interval: u32) -> Recurrence {
        rec(
            Frequency::Monthly { day },
            interval,
            RecurrenceEnd::Count { count: 10 },
        )
    }

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn monthly_uses_last_day_of_short_months() {
        let r = monthly(31, 1);
        assert_eq!(next_date(d(2027, 1, 31), &r), Some(d(2027, 2, 28)));
        assert_eq!(next_date(d(2027, 2, 28), &r), Some(d(2027, 3, 31)));
        assert_eq!(next_date(d(2028, 1, 31), &r), Some(d(2028, 2, 29)));
        assert_eq!(next_date(d(2027, 12, 31), &r), Some(d(2028, 1, 31)));
    }

    #[test]
    fn monthly_from_a_day_before_the_rules_day_stays_in_the_month() {
        let r = monthly(20, 3);
        assert_eq!(next_date(d(2027, 1, 5), &r), Some(d(2027, 1, 20)));
        assert_eq!(next_date(d(2027, 1, 20), &r), Some(d(2027, 4, 20)));
        assert_eq!(next_date(d(2027, 1, 25), &r), Some(d(2027, 4, 20)));
        let r = monthly(31, 1);
        assert_eq!(next_date(d(2027, 2, 1), &r), Some(d(2027, 2, 28)));
    }

    #[test]
    fn monthly_with_an_interval_beyond_i32_does_not_go_back() {
        for interval in [
            i32::MAX as u32,
            i32::MAX as u32 + 1,
            u32::MAX - 1000,
            u32::MAX,
        ] {
            let r = monthly(1, interval);
            assert_eq!(next_date(d(1990, 1, 1), &r), None, "interval {interval}");
        }
    }

    #[test]
    fn huge_weekly_interval_has_no_next_day() {
        let r = rec(
            Frequency::Weekly {
                weekdays: vec![Weekday::Mon],
            },
            u32::MAX,
            RecurrenceEnd::Count { count: 10 },
        );
        assert_eq!(next_date(d(1990, 1, 1), &r), None);
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

    // ----- properties -----

    use chrono::offset::LocalResult;
    use chrono::{Timelike, Weekday as Wd};
    use proptest::prelude::*;

    const WEEKDAYS: [Wd; 7] = [
        Wd::Mon,
        Wd::Tue,
        Wd::Wed,
        Wd::Thu,
        Wd::Fri,
        Wd::Sat,
        Wd::Sun,
    ];

    fn arb_frequency() -> impl Strategy<Value = Frequency> {
        prop_oneof![
            Just(Frequency::Daily),
            proptest::collection::btree_set(0usize..7, 1..=7).prop_map(|s| Frequency::Weekly {
                weekdays: s.into_iter().map(|i| WEEKDAYS[i]).collect(),
            }),
            (1u8..=31).prop_map(|day| Frequency::Monthly { day }),
            // The days that do not exist in every month, more often.
            (29u8..=31).prop_map(|day| Frequency::Monthly { day }),
        ]
    }

    /// A day from 1990 to about 2045.
    fn arb_date() -> impl Strategy<Value = NaiveDate> {
        (0i64..20_000).prop_map(|n| d(1990, 1, 1) + Duration::days(n))
    }

    fn arb_rule() -> impl Strategy<Value = Recurrence> {
        (arb_frequency(), 1u32..=6).prop_map(|(frequency, interval)| Recurrence {
            frequency,
            interval,
            end: RecurrenceEnd::Count { count: u32::MAX },
            occurrence: 1,
        })
    }

    /// The number of months since year 0 (independent of the code under test).
    fn month_index(c: NaiveDate) -> i64 {
        i64::from(c.year()) * 12 + i64::from(c.month()) - 1
    }

    /// The last day of `c`'s month, by trying the days.
    fn month_length(c: NaiveDate) -> u32 {
        (28..=31)
            .rev()
            .find(|&x| NaiveDate::from_ymd_opt(c.year(), c.month(), x).is_some())
            .unwrap()
    }

    fn monday_of(c: NaiveDate) -> NaiveDate {
        c - Duration::days(i64::from(c.weekday().num_days_from_monday()))
    }

    /// Whether day `c` (after `start`) is an occurrence of `r` for a series starting at
    /// `start`: the documented rule, checked directly on the day.
    fn oracle_matches(start: NaiveDate, r: &Recurrence, c: NaiveDate) -> bool {
        let i = i64::from(r.interval);
        match &r.frequency {
            Frequency::Daily => (c - start).num_days() % i == 0,
            Frequency::Weekly { weekdays } => {
                let weeks = (monday_of(c) - monday_of(start)).num_days() / 7;
                weeks % i == 0 && weekdays.contains(&c.weekday())
            }
            Frequency::Monthly { day } => {
                (month_index(c) - month_index(start)) % i == 0
                    && c.day() == u32::from(*day).min(month_length(c))
            }
        }
    }

    /// The first `n` occurrences after `start`, walking day by day.
    fn oracle(start: NaiveDate, r: &Recurrence, n: usize) -> Vec<NaiveDate> {
        let mut out = vec![];
        let mut c = start;
        while out.len() < n {
            c = c.succ_opt().unwrap();
            if oracle_matches(start, r, c) {
                out.push(c);
            }
        }
        out
    }

    /// The series of `next` from a first due: every due, with its recurrence.
    fn series(due: Due, r: Recurrence, cap: usize) -> Vec<(Due, Recurrence)> {
        let mut out = vec![(due, r)];
        while out.len() < cap {
            let (d, r) = out.last().unwrap();
            match next(d, r) {
                Some(x) => out.push(x),
                None => break,
            }
        }
        out
    }

    fn date_of(due: &Due) -> NaiveDate {
        match due {
            Due::Date { date } => *date,
            Due::At { .. } => unreachable!(),
        }
    }

    proptest! {
        /// Stepping `next_date` from a start gives the same days as walking the calendar
        /// day by day and keeping the days the rule names: strictly increasing, on the
        /// rule's weekdays, on the rule's day of the month (or the last day of a shorter
        /// month), every `interval` days/weeks/months, none skipped.
        #[test]
        fn next_date_walks_like_the_calendar(start in arb_date(), r in arb_rule()) {
            let want = oracle(start, &r, 12);
            let mut got = vec![];
            let mut c = start;
            for _ in 0..12 {
                c = next_date(c, &r).unwrap();
                got.push(c);
            }
            prop_assert_eq!(&got, &want);
            let mut prev = start;
            for c in got {
                prop_assert!(c > prev, "{c} after {prev}");
                match &r.frequency {
                    Frequency::Daily => {}
                    Frequency::Weekly { weekdays } => {
                        prop_assert!(weekdays.contains(&c.weekday()), "{c} is a {:?}", c.weekday());
                    }
                    Frequency::Monthly { day } => {
                        let want = u32::from(*day).min(month_length(c));
                        prop_assert_eq!(c.day(), want);
                    }
                }
                prev = c;
            }
        }

        /// A series with a count has exactly `count` occurrences (the occurrence number
        /// counting 1, 2, ... up to it), on the calendar's days.
        #[test]
        fn a_count_bounds_the_series(
            start in arb_date(),
            r in arb_rule(),
            count in 1u32..=30,
            first in 1u32..=30,
        ) {
            let first = first.min(count);
            let r = Recurrence { end: RecurrenceEnd::Count { count }, occurrence: first, ..r };
            let s = series(Due::Date { date: start }, r.clone(), 100);
            prop_assert_eq!(s.len() as u32, count - first + 1);
            for (i, (_, x)) in s.iter().enumerate() {
                prop_assert_eq!(x.occurrence, first + i as u32);
                prop_assert!(x.occurrence <= count);
                prop_assert_eq!(&x.frequency, &r.frequency);
                prop_assert_eq!(x.interval, r.interval);
            }
            let dates: Vec<NaiveDate> = s.iter().skip(1).map(|x| date_of(&x.0)).collect();
            prop_assert_eq!(dates, oracle(start, &r, s.len() - 1));
        }

        /// A series with an end date has every occurrence on or before it, and stops only
        /// when the calendar's next occurrence is after it.
        #[test]
        fn an_end_date_bounds_the_series(start in arb_date(), r in arb_rule(), days in 0i64..800) {
            let until = start + Duration::days(days);
            let r = Recurrence { end: RecurrenceEnd::Until { date: until }, ..r };
            let s = series(Due::Date { date: start }, r.clone(), 1000);
            prop_assert!(s.len() < 1000);
            let dates: Vec<NaiveDate> = s.iter().skip(1).map(|x| date_of(&x.0)).collect();
            for c in &dates {
                prop_assert!(*c <= until, "{c} after the end {until}");
            }
            let want = oracle(start, &r, dates.len() + 1);
            prop_assert_eq!(&dates[..], &want[..dates.len()]);
            prop_assert!(want[dates.len()] > until, "stopped before {}", want[dates.len()]);
        }

        /// Any interval, however large: the next day is after the day, or there is none
        /// (beyond the calendar's range); never an earlier day and never a panic.
        #[test]
        fn large_intervals_never_go_back(
            start in arb_date(),
            f in arb_frequency(),
            interval in prop_oneof![
                1u32..=1000,
                any::<u32>().prop_map(|x| x.max(1)),
                // Around the largest i32 and the largest u32.
                (i32::MAX as u32 - 100_000)..=(i32::MAX as u32 + 100_000),
                (u32::MAX - 4_000_000)..=u32::MAX,
            ],
        ) {
            let r = Recurrence {
                frequency: f,
                interval,
                end: RecurrenceEnd::Count { count: 10 },
                occurrence: 1,
            };
            if let Some(n) = next_date(start, &r) {
                prop_assert!(n > start, "{n} after {start} (interval {interval})");
                if let Frequency::Weekly { weekdays } = &r.frequency {
                    let weeks = (monday_of(n) - monday_of(start)).num_days() / 7;
                    prop_assert!(weeks == 0 || weeks == i64::from(interval), "{weeks} weeks");
                    prop_assert!(weekdays.contains(&n.weekday()));
                }
                if let Frequency::Monthly { day } = r.frequency {
                    let months = month_index(n) - month_index(start);
                    prop_assert!(months == 0 || months == i64::from(interval), "{months} months");
                    prop_assert_eq!(n.day(), u32::from(day).min(month_length(n)));
                }
            }
        }

        /// A timed daily or weekly series keeps its local time of day across daylight
        /// saving changes in Berlin and New York; a time that does not exist on a day
        /// (the spring-forward gap, 02:00-03:00 in both zones) is an hour later that day,
        /// and a repeated time (fall back) is the first of the two instants. A time moved
        /// out of a gap stays moved in the later occurrences: a due keeps only its instant,
        /// not the wall time it was first given.
        #[test]
        fn timed_series_keep_the_local_time(
            zone in prop_oneof![Just("Europe/Berlin"), Just("America/New_York")],
            year in 2020i32..2032,
            spring in any::<bool>(),
            offset in -6i64..2,
            minute_of_day in 0u32..(24 * 60),
            weekly in any::<bool>(),
        ) {
            let tz: Tz = zone.parse().unwrap();
            // A few days before a change: the last Sunday of March or October in
            // Berlin, the second Sunday of March or the first of November in New York.
            let (m, nth_sunday) = match (zone, spring) {
                ("Europe/Berlin", true) => (3, 5),
                ("Europe/Berlin", false) => (10, 5),
                (_, true) => (3, 2),
                (_, false) => (11, 1),
            };
            let sundays: Vec<NaiveDate> = (1..=31)
                .filter_map(|x| NaiveDate::from_ymd_opt(year, m, x))
                .filter(|x| x.weekday() == Wd::Sun)
                .collect();
            let change = sundays[(nth_sunday - 1).min(sundays.len() - 1)];
            let start_day = change + Duration::days(offset);
            let time = NaiveTime::from_hms_opt(minute_of_day / 60, minute_of_day % 60, 0).unwrap();
            let at = local_instant(tz, start_day, time).unwrap();
            let first_local = at.with_timezone(&tz);
            let frequency = if weekly {
                Frequency::Weekly { weekdays: WEEKDAYS.to_vec() }
            } else {
                Frequency::Daily
            };
            let r = Recurrence {
                frequency,
                interval: 1,
                end: RecurrenceEnd::Count { count: 12 },
                occurrence: 1,
            };
            let s = series(Due::At { at, time_zone: zone.into() }, r, 100);
            prop_assert_eq!(s.len(), 12);
            let mut prev = first_local;
            for (due, _) in s.iter().skip(1) {
                let Due::At { at: n, time_zone } = due else { panic!("a timed due") };
                prop_assert_eq!(time_zone.as_str(), zone);
                let local = n.with_timezone(&tz);
                prop_assert_eq!(local.date_naive(), prev.date_naive().succ_opt().unwrap());
                let wanted = prev.time();
                match tz.from_local_datetime(&local.date_naive().and_time(wanted)) {
                    LocalResult::Single(x) => prop_assert_eq!(*n, x.with_timezone(&Utc)),
                    LocalResult::Ambiguous(a, b) => {
                        prop_assert!(a < b);
                        prop_assert_eq!(*n, a.with_timezone(&Utc));
                    }
                    LocalResult::None => {
                        prop_assert_eq!(local.time(), wanted + Duration::hours(1));
                    }
                }
                // Away from the gap hour the first occurrence's time holds all along.
                if !(2..3).contains(&time.hour()) {
                    prop_assert_eq!(local.time(), time);
                }
                prop_assert!(*n > prev.with_timezone(&Utc));
                prev = local;
            }
        }
    }
}
