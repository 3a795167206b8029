//! Calendar strategies and the naive minute-by-minute oracle shared by the property tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use crmkit_tickets::calendar::{BusinessCalendar, CalendarSpec, Interval, WeeklyHours};
use proptest::prelude::*;

pub const ALL_DAYS: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

pub fn date(y: i32, mo: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, mo, d).unwrap()
}

pub const ZONES: [&str; 5] = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "Asia/Kolkata",
    "UTC",
];

/// Dates with DST changes in some of the zones (and ordinary dates for the others).
pub fn dst_dates() -> [NaiveDate; 6] {
    [
        date(2026, 3, 8),   // New York spring forward
        date(2026, 3, 29),  // Berlin spring forward
        date(2026, 4, 5),   // Sydney fall back
        date(2026, 10, 4),  // Sydney spring forward
        date(2026, 10, 25), // Berlin fall back
        date(2026, 11, 1),  // New York fall back
    ]
}

/// Days of the oracle's window after the start instant.
pub const WINDOW_DAYS: i64 = 10;
pub const WINDOW: usize = (WINDOW_DAYS * 1440) as usize;

/// The raw description of a random calendar.
#[derive(Debug, Clone)]
pub struct RawCal {
    pub zone: &'static str,
    pub week: [Vec<Interval>; 7],
    pub exceptions: BTreeMap<NaiveDate, Vec<Interval>>,
}

impl RawCal {
    pub fn build(&self) -> BusinessCalendar {
        let mut hours = WeeklyHours::default();
        for (i, day) in ALL_DAYS.iter().enumerate() {
            *hours.get_mut(*day) = self.week[i].clone();
        }
        BusinessCalendar::new(CalendarSpec {
            time_zone: self.zone.to_string(),
            hours,
            exceptions: self.exceptions.clone(),
        })
        .unwrap()
    }

    /// The naive oracle: is the UTC minute starting at `at` working time?
    pub fn working(&self, tz: Tz, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&tz).naive_local();
        let minute = (local.hour() * 60 + local.minute()) as u16;
        let intervals = match self.exceptions.get(&local.date()) {
            Some(iv) => iv,
            None => &self.week[local.weekday().num_days_from_monday() as usize],
        };
        intervals
            .iter()
            .any(|iv| iv.start <= minute && minute < iv.end)
    }

    /// For each minute of the window from `start`, whether it is working time.
    pub fn minutes(&self, start: DateTime<Utc>) -> Vec<bool> {
        let tz: Tz = self.zone.parse().unwrap();
        (0..WINDOW)
            .map(|i| self.working(tz, start + TimeDelta::minutes(i as i64)))
            .collect()
    }
}

/// Non-overlapping intervals of one day, possibly touching, possibly none.
pub fn day_strategy() -> impl Strategy<Value = Vec<Interval>> {
    prop_oneof![
        1 => Just(vec![Interval::all_day()]),
        1 => Just(vec![]),
        6 => prop::collection::vec(0u16..=1440, 0..=6).prop_map(|mut points| {
            points.sort_unstable();
            points
                .chunks_exact(2)
                .filter(|p| p[0] < p[1])
                .map(|p| Interval::new(p[0], p[1]))
                .collect()
        }),
    ]
}

/// A random calendar with exceptions near `base`, and a start minute within three days of
/// `base`'s local midnight.
pub fn case_strategy() -> impl Strategy<Value = (RawCal, DateTime<Utc>)> {
    (
        prop::sample::select(&ZONES[..]),
        prop::array::uniform7(day_strategy()),
        prop::sample::select(dst_dates().to_vec()),
        prop::collection::vec((-4i64..12, day_strategy()), 0..5),
        -3 * 1440i64..3 * 1440,
    )
        .prop_map(|(zone, mut week, base, exceptions, offset)| {
            if week.iter().all(Vec::is_empty) {
                week[0] = vec![Interval::hm(9, 0, 17, 0)];
            }
            let exceptions = exceptions
                .into_iter()
                .map(|(d, iv)| (base + TimeDelta::days(d), iv))
                .collect();
            let start = base.and_hms_opt(0, 0, 0).unwrap().and_utc() + TimeDelta::minutes(offset);
            (
                RawCal {
                    zone,
                    week,
                    exceptions,
                },
                start,
            )
        })
}
