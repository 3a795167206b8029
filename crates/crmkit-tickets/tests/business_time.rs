//! Business-time arithmetic and SLA clocks: unit tests on known dates (DST changes in
//! Berlin and New York, holidays, extra working days, overnight gaps, 24:00, validation)
//! and property tests against a naive minute-by-minute oracle.

use std::time::Instant;

use chrono::{DateTime, TimeDelta, TimeZone, Utc, Weekday};
use crmkit_tickets::calendar::{BusinessCalendar, CalendarSpec, Interval};
use crmkit_tickets::clock::{ClockState, SlaClock};
use proptest::prelude::*;

mod common;
use common::*;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

/// Berlin, Monday to Friday 09:00-17:00.
fn berlin_office() -> BusinessCalendar {
    BusinessCalendar::builder("Europe/Berlin")
        .weekdays([Interval::hm(9, 0, 17, 0)])
        .build()
        .unwrap()
}

/// `zone`, every day 00:00-24:00.
fn round_the_clock(zone: &str) -> BusinessCalendar {
    let mut b = BusinessCalendar::builder(zone);
    for day in ALL_DAYS {
        b = b.hours(day, [Interval::all_day()]);
    }
    b.build().unwrap()
}

/// `zone`, Monday to Friday 09:00-17:00 and Sunday 00:00-06:00 (covering the DST changes,
/// which are on Sunday nights in Europe and North America).
fn night_shift(zone: &str) -> BusinessCalendar {
    BusinessCalendar::builder(zone)
        .weekdays([Interval::hm(9, 0, 17, 0)])
        .hours(Weekday::Sun, [Interval::hm(0, 0, 6, 0)])
        .build()
        .unwrap()
}

fn fields(err: &crmkit_core::Error) -> Vec<String> {
    err.validation_errors()
        .expect("a validation error")
        .errors
        .iter()
        .map(|e| e.field.clone())
        .collect()
}

// --- DST -------------------------------------------------------------------------------

#[test]
fn berlin_spring_forward_skips_the_missing_hour() {
    // 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00 UTC.
    let cal = night_shift("Europe/Berlin");
    let midnight = utc(2026, 3, 28, 23, 0); // 00:00 CET
    let six = utc(2026, 3, 29, 4, 0); // 06:00 CEST
    assert_eq!(cal.minutes_between(midnight, six), 5 * 60);
    assert_eq!(
        cal.minutes_between(midnight, utc(2026, 3, 30, 0, 0)),
        5 * 60
    );
    // 01:30 CET + 60 working minutes = 03:30 CEST (only 30 minutes of wall clock exist
    // before 02:00, then 03:00 follows).
    assert_eq!(
        cal.add_minutes(utc(2026, 3, 29, 0, 30), 60),
        utc(2026, 3, 29, 1, 30)
    );
    assert_eq!(cal.add_minutes(midnight, 300), six);
    // A normal Sunday has 6 hours.
    assert_eq!(
        cal.minutes_between(utc(2026, 3, 21, 23, 0), utc(2026, 3, 22, 5, 0)),
        360
    );
    // Round the clock: the day has 23 hours.
    let cal = round_the_clock("Europe/Berlin");
    assert_eq!(
        cal.minutes_between(midnight, utc(2026, 3, 29, 22, 0)),
        23 * 60
    );
    assert_eq!(cal.add_minutes(midnight, 120), utc(2026, 3, 29, 1, 0));
}

#[test]
fn berlin_spring_forward_interval_inside_the_gap_is_empty() {
    let cal = BusinessCalendar::builder("Europe/Berlin")
        .weekdays([Interval::hm(9, 0, 17, 0)])
        .exception(date(2026, 3, 29), [Interval::hm(2, 0, 2, 30)])
        .build()
        .unwrap();
    // Saturday 12:00: the exception on Sunday does not exist, so Monday 09:00 CEST is next.
    let sat = utc(2026, 3, 28, 11, 0);
    assert_eq!(cal.next_working_instant(sat), utc(2026, 3, 30, 7, 0));
    assert_eq!(cal.minutes_between(sat, utc(2026, 3, 30, 7, 0)), 0);
    assert!(!cal.is_working(utc(2026, 3, 29, 1, 0)));
}

#[test]
fn berlin_fall_back_counts_the_repeated_hour_twice() {
    // 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00 UTC.
    let cal = night_shift("Europe/Berlin");
    let midnight = utc(2026, 10, 24, 22, 0); // 00:00 CEST
    let six = utc(2026, 10, 25, 5, 0); // 06:00 CET
    assert_eq!(cal.minutes_between(midnight, six), 7 * 60);
    assert_eq!(cal.add_minutes(midnight, 7 * 60), six);
    // 02:30 CEST (00:30 UTC) + 60 = 02:30 CET (01:30 UTC).
    assert_eq!(
        cal.add_minutes(utc(2026, 10, 25, 0, 30), 60),
        utc(2026, 10, 25, 1, 30)
    );
    let cal = round_the_clock("Europe/Berlin");
    assert_eq!(
        cal.minutes_between(midnight, utc(2026, 10, 25, 23, 0)),
        25 * 60
    );

    // 02:00-02:30 on the fall-back day happens twice: 00:00-00:30 and 01:00-01:30 UTC.
    let cal = BusinessCalendar::builder("Europe/Berlin")
        .weekdays([Interval::hm(9, 0, 17, 0)])
        .exception(date(2026, 10, 25), [Interval::hm(2, 0, 2, 30)])
        .build()
        .unwrap();
    assert!(cal.is_working(utc(2026, 10, 25, 0, 15)));
    assert!(!cal.is_working(utc(2026, 10, 25, 0, 45)));
    assert!(cal.is_working(utc(2026, 10, 25, 1, 15)));
    assert!(!cal.is_working(utc(2026, 10, 25, 1, 30)));
    let sat = utc(2026, 10, 24, 12, 0);
    assert_eq!(cal.minutes_between(sat, utc(2026, 10, 26, 0, 0)), 60);
    assert_eq!(cal.add_minutes(sat, 30), utc(2026, 10, 25, 0, 30));
    assert_eq!(cal.add_minutes(sat, 31), utc(2026, 10, 25, 1, 1));
    assert_eq!(cal.add_minutes(sat, 60), utc(2026, 10, 25, 1, 30));
    // Then Monday 09:00 CET = 08:00 UTC.
    assert_eq!(cal.add_minutes(sat, 61), utc(2026, 10, 26, 8, 1));
}

#[test]
fn new_york_spring_forward_and_fall_back() {
    // 2026-03-08: 02:00 EST becomes 03:00 EDT at 07:00 UTC.
    let cal = night_shift("America/New_York");
    let midnight = utc(2026, 3, 8, 5, 0); // 00:00 EST
    assert_eq!(
        cal.minutes_between(midnight, utc(2026, 3, 8, 10, 0)),
        5 * 60
    );
    assert_eq!(cal.add_minutes(midnight, 5 * 60), utc(2026, 3, 8, 10, 0)); // 06:00 EDT
    assert_eq!(cal.add_minutes(midnight, 150), utc(2026, 3, 8, 7, 30)); // 03:30 EDT
    // 2026-11-01: 02:00 EDT becomes 01:00 EST at 06:00 UTC.
    let midnight = utc(2026, 11, 1, 4, 0); // 00:00 EDT
    assert_eq!(
        cal.minutes_between(midnight, utc(2026, 11, 1, 11, 0)),
        7 * 60
    );
    assert_eq!(cal.add_minutes(midnight, 7 * 60), utc(2026, 11, 1, 11, 0)); // 06:00 EST
    // 01:30 EDT + 60 = 01:30 EST.
    assert_eq!(
        cal.add_minutes(utc(2026, 11, 1, 5, 30), 60),
        utc(2026, 11, 1, 6, 30)
    );

    let cal = round_the_clock("America/New_York");
    assert_eq!(
        cal.minutes_between(utc(2026, 3, 8, 5, 0), utc(2026, 3, 9, 4, 0)),
        23 * 60
    );
    assert_eq!(
        cal.minutes_between(utc(2026, 11, 1, 4, 0), utc(2026, 11, 2, 5, 0)),
        25 * 60
    );
}

#[test]
fn office_hours_across_dst_weekends() {
    let cal = berlin_office();
    // Friday 2026-03-27 16:00 CET (15:00 UTC) + 120 = Monday 10:00 CEST (08:00 UTC).
    let fri = utc(2026, 3, 27, 15, 0);
    assert_eq!(cal.add_minutes(fri, 120), utc(2026, 3, 30, 8, 0));
    assert_eq!(cal.minutes_between(fri, utc(2026, 3, 30, 8, 0)), 120);
    // Friday 2026-10-23 16:00 CEST (14:00 UTC) + 120 = Monday 10:00 CET (09:00 UTC).
    let fri = utc(2026, 10, 23, 14, 0);
    assert_eq!(cal.add_minutes(fri, 120), utc(2026, 10, 26, 9, 0));
    assert_eq!(cal.minutes_between(fri, utc(2026, 10, 26, 9, 0)), 120);
    // New York office hours around its own changes.
    let ny = BusinessCalendar::builder("America/New_York")
        .weekdays([Interval::hm(9, 0, 17, 0)])
        .build()
        .unwrap();
    // Friday 2026-03-06 16:00 EST (21:00 UTC) + 120 = Monday 10:00 EDT (14:00 UTC).
    assert_eq!(
        ny.add_minutes(utc(2026, 3, 6, 21, 0), 120),
        utc(2026, 3, 9, 14, 0)
    );
    // Friday 2026-10-30 16:00 EDT (20:00 UTC) + 120 = Monday 10:00 EST (15:00 UTC).
    assert_eq!(
        ny.add_minutes(utc(2026, 10, 30, 20, 0), 120),
        utc(2026, 11, 2, 15, 0)
    );
}

// --- Exceptions, gaps, 24:00 --------------------------------------------------------------

#[test]
fn overnight_and_weekend_gap() {
    let cal = berlin_office();
    // Friday 2026-06-05 17:00 CEST (15:00 UTC) is not working time; + 60 = Monday 10:00.
    let fri = utc(2026, 6, 5, 15, 0);
    assert!(!cal.is_working(fri));
    assert!(cal.is_working(fri - TimeDelta::seconds(1)));
    assert_eq!(cal.next_working_instant(fri), utc(2026, 6, 8, 7, 0));
    assert_eq!(cal.add_minutes(fri, 0), utc(2026, 6, 8, 7, 0));
    assert_eq!(cal.add_minutes(fri, 60), utc(2026, 6, 8, 8, 0));
    // Tuesday 16:30 + 60 = Wednesday 09:30.
    assert_eq!(
        cal.add_minutes(utc(2026, 6, 9, 14, 30), 60),
        utc(2026, 6, 10, 7, 30)
    );
    // Ending exactly at the end of a day gives the end of the day, not the next morning.
    assert_eq!(
        cal.add_minutes(utc(2026, 6, 9, 14, 30), 30),
        utc(2026, 6, 9, 15, 0)
    );
    // A working instant plus 0 is itself, even with sub-second precision.
    let t = utc(2026, 6, 9, 10, 0) + TimeDelta::milliseconds(1500);
    assert_eq!(cal.add_minutes(t, 0), t);
    assert_eq!(cal.add_minutes(t, 1), t + TimeDelta::minutes(1));
    assert_eq!(cal.minutes_between(t, cal.add_minutes(t, 480)), 480);
    // Negative counts count as 0.
    assert_eq!(cal.add_minutes(fri, -5), utc(2026, 6, 8, 7, 0));
    assert_eq!(cal.checked_add_minutes(fri, -5), None);
    // Reversed ranges are empty.
    assert_eq!(
        cal.minutes_between(utc(2026, 6, 9, 12, 0), utc(2026, 6, 9, 10, 0)),
        0
    );
}

#[test]
fn holidays_are_skipped() {
    let cal = BusinessCalendar::builder("Europe/Berlin")
        .weekdays([Interval::hm(9, 0, 12, 0), Interval::hm(13, 0, 17, 0)])
        .holiday(date(2026, 12, 24))
        .holiday(date(2026, 12, 25))
        .build()
        .unwrap();
    // Wednesday 2026-12-23 16:00 CET (15:00 UTC) + 120: 60 today, then Monday 28th.
    let wed = utc(2026, 12, 23, 15, 0);
    assert_eq!(cal.add_minutes(wed, 120), utc(2026, 12, 28, 9, 0));
    assert!(!cal.is_working(utc(2026, 12, 24, 10, 0)));
    assert_eq!(cal.hours_on(date(2026, 12, 24)), &[] as &[Interval]);
    // The lunch break is skipped: Monday 11:30 + 60 = 13:30.
    assert_eq!(
        cal.add_minutes(utc(2026, 12, 28, 10, 30), 60),
        utc(2026, 12, 28, 12, 30)
    );
    assert_eq!(
        cal.minutes_between(utc(2026, 12, 21, 0, 0), utc(2026, 12, 28, 0, 0)),
        3 * 7 * 60
    );
}

#[test]
fn extra_working_saturday_and_special_hours() {
    let cal = BusinessCalendar::builder("Europe/Berlin")
        .weekdays([Interval::hm(9, 0, 17, 0)])
        .exception(date(2026, 6, 6), [Interval::hm(10, 0, 14, 0)]) // a Saturday
        .exception(date(2026, 6, 9), [Interval::hm(9, 0, 11, 0)]) // a short Tuesday
        .build()
        .unwrap();
    // Friday 16:30 CEST + 60 = Saturday 10:30 CEST (08:30 UTC).
    assert_eq!(
        cal.add_minutes(utc(2026, 6, 5, 14, 30), 60),
        utc(2026, 6, 6, 8, 30)
    );
    // The Saturday has 4 hours; the next one none.
    assert_eq!(
        cal.minutes_between(utc(2026, 6, 6, 0, 0), utc(2026, 6, 7, 0, 0)),
        240
    );
    assert_eq!(
        cal.minutes_between(utc(2026, 6, 13, 0, 0), utc(2026, 6, 14, 0, 0)),
        0
    );
    // Tuesday ends at 11:00: 10:30 + 60 = Wednesday 09:30.
    assert_eq!(
        cal.add_minutes(utc(2026, 6, 9, 8, 30), 60),
        utc(2026, 6, 10, 7, 30)
    );
}

#[test]
fn intervals_ending_at_midnight() {
    let cal = BusinessCalendar::builder("Europe/Berlin")
        .hours(Weekday::Mon, [Interval::hm(18, 0, 24, 0)])
        .hours(Weekday::Tue, [Interval::hm(0, 0, 6, 0)])
        .build()
        .unwrap();
    // Monday 2026-06-08 23:30 CEST (21:30 UTC) + 60 = Tuesday 00:30 CEST.
    let mon = utc(2026, 6, 8, 21, 30);
    assert_eq!(cal.add_minutes(mon, 60), utc(2026, 6, 8, 22, 30));
    assert!(cal.is_working(utc(2026, 6, 8, 21, 59)));
    assert!(cal.is_working(utc(2026, 6, 8, 22, 0)));
    assert_eq!(
        cal.minutes_between(utc(2026, 6, 8, 0, 0), utc(2026, 6, 10, 0, 0)),
        12 * 60
    );
    assert_eq!(Interval::hm(18, 0, 24, 0).to_string(), "18:00-24:00");
    assert_eq!(
        "18:00-24:00".parse::<Interval>().unwrap(),
        Interval::new(1080, 1440)
    );
}

#[test]
fn zones_without_dst_and_with_half_hour_offsets() {
    let cal = BusinessCalendar::builder("Asia/Kolkata")
        .weekdays([Interval::hm(9, 30, 18, 0)])
        .build()
        .unwrap();
    // 09:30 IST = 04:00 UTC.
    assert_eq!(
        cal.next_working_instant(utc(2026, 6, 8, 0, 0)),
        utc(2026, 6, 8, 4, 0)
    );
    let cal = round_the_clock("UTC");
    assert_eq!(
        cal.add_minutes(utc(2026, 1, 1, 0, 0), 1440 * 365),
        utc(2027, 1, 1, 0, 0)
    );
}

// --- Validation ----------------------------------------------------------------------------

#[test]
fn every_validation_error_names_its_field() {
    let mut spec = CalendarSpec::new("Europe/Atlantis");
    spec.hours.monday = vec![Interval::hm(9, 0, 12, 0), Interval::hm(17, 0, 9, 0)];
    spec.hours.tuesday = vec![Interval::hm(24, 0, 24, 0), Interval::hm(20, 0, 25, 0)];
    spec.hours.wednesday = vec![
        Interval::hm(13, 0, 17, 0),
        Interval::hm(9, 0, 14, 0),
        Interval::hm(8, 0, 8, 0),
    ];
    spec.hours.thursday = vec![Interval::hm(9, 0, 12, 0), Interval::hm(12, 0, 13, 0)];
    spec.exceptions
        .insert(date(2026, 12, 25), vec![Interval::hm(10, 0, 10, 0)]);
    spec.exceptions.insert(
        date(2026, 12, 31),
        vec![Interval::hm(9, 0, 12, 0), Interval::hm(11, 0, 13, 0)],
    );
    let err = BusinessCalendar::new(spec).unwrap_err();
    assert_eq!(
        fields(&err),
        [
            "time_zone",
            "hours.monday[1]",
            "hours.tuesday[0]",
            "hours.tuesday[1]",
            "hours.wednesday[2]",
            "hours.wednesday[0]",
            "exceptions[2026-12-25][0]",
            "exceptions[2026-12-31][1]",
        ]
    );
    let text = err.to_string();
    assert!(text.contains("unknown time zone"), "{text}");
    assert!(text.contains("overlaps hours.wednesday[1]"), "{text}");
    assert!(text.contains("out of range"), "{text}");

    // No working time in the regular week; exceptions do not help.
    let mut spec = CalendarSpec::new("UTC");
    spec.exceptions
        .insert(date(2026, 6, 6), vec![Interval::all_day()]);
    assert_eq!(fields(&BusinessCalendar::new(spec).unwrap_err()), ["hours"]);
    // Only invalid intervals: both the interval and the week.
    let err = BusinessCalendar::builder("UTC")
        .hours(Weekday::Fri, [Interval::hm(17, 0, 9, 0)])
        .build()
        .unwrap_err();
    assert_eq!(fields(&err), ["hours.friday[0]", "hours"]);
    // Extreme values do not panic.
    let err = BusinessCalendar::builder("")
        .hours(Weekday::Sat, [Interval::new(u16::MAX, u16::MAX)])
        .hours(Weekday::Sun, [Interval::hm(u16::MAX, u16::MAX, 0, 0)])
        .build()
        .unwrap_err();
    assert_eq!(
        fields(&err),
        [
            "time_zone",
            "hours.saturday[0]",
            "hours.saturday[0]",
            "hours.sunday[0]",
            "hours"
        ]
    );
}

#[test]
fn touching_intervals_are_merged() {
    let cal = BusinessCalendar::builder("UTC")
        .hours(
            Weekday::Mon,
            [
                Interval::hm(12, 0, 13, 0),
                Interval::hm(9, 0, 12, 0),
                Interval::hm(14, 0, 15, 0),
            ],
        )
        .build()
        .unwrap();
    assert_eq!(
        cal.spec().hours.monday,
        [Interval::hm(9, 0, 13, 0), Interval::hm(14, 0, 15, 0)]
    );
}

#[test]
fn serde_round_trip_and_validation_on_deserialize() {
    let cal = BusinessCalendar::builder("Europe/Berlin")
        .weekdays([Interval::hm(9, 0, 12, 0), Interval::hm(13, 0, 17, 0)])
        .holiday(date(2026, 12, 25))
        .exception(date(2026, 12, 19), [Interval::hm(10, 0, 14, 0)])
        .build()
        .unwrap();
    let json = serde_json::to_string(&cal).unwrap();
    assert!(
        json.contains(r#""monday":["09:00-12:00","13:00-17:00"]"#),
        "{json}"
    );
    assert!(json.contains(r#""2026-12-25":[]"#), "{json}");
    let back: BusinessCalendar = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cal);

    let bad = r#"{"time_zone":"Mars/Olympus","hours":{"monday":["17:00-09:00"]}}"#;
    let err = serde_json::from_str::<BusinessCalendar>(bad)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("time_zone") && err.contains("hours.monday[0]"),
        "{err}"
    );
    assert!(
        serde_json::from_str::<BusinessCalendar>(
            r#"{"time_zone":"UTC","hours":{"monday":["9-17"]}}"#
        )
        .is_err()
    );
    for bad in [
        "",
        "09:00",
        "09:00-",
        "9:0-10:00",
        "09:60-10:00",
        "a:00-10:00",
        "09:00-10:00-11:00",
    ] {
        assert!(bad.parse::<Interval>().is_err(), "{bad}");
    }
    assert_eq!(
        "9:15-25:00".parse::<Interval>().unwrap(),
        Interval::new(555, 1500)
    );

    let mut clock = SlaClock::start(utc(2026, 6, 8, 8, 0), 60).unwrap();
    clock.pause(&cal, utc(2026, 6, 8, 8, 30));
    let json = serde_json::to_string(&clock).unwrap();
    assert_eq!(serde_json::from_str::<SlaClock>(&json).unwrap(), clock);
}

#[test]
fn search_is_bounded() {
    let cal = round_the_clock("UTC");
    let t = utc(2026, 1, 1, 0, 0);
    let began = Instant::now();
    // Two centuries of minutes are beyond the horizon.
    assert_eq!(cal.checked_add_minutes(t, 200 * 366 * 1440), None);
    assert_eq!(
        cal.add_minutes(t, 200 * 366 * 1440),
        DateTime::<Utc>::MAX_UTC
    );
    assert_eq!(cal.add_minutes(t, i64::MAX), DateTime::<Utc>::MAX_UTC);
    // Ten years (with two leap days) is fine.
    let ten = cal.add_minutes(t, 3652 * 1440);
    assert_eq!(ten, utc(2036, 1, 1, 0, 0));
    assert_eq!(cal.minutes_between(t, ten), 3652 * 1440);
    // Near the limits of chrono's range nothing panics.
    let _ = cal.add_minutes(DateTime::<Utc>::MAX_UTC, 10);
    let _ = cal.minutes_between(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
    let _ = cal.is_working(DateTime::<Utc>::MIN_UTC);
    let _ = cal.next_working_instant(DateTime::<Utc>::MAX_UTC);
    assert!(began.elapsed().as_secs() < 30, "took {:?}", began.elapsed());
}

// --- SLA clock -----------------------------------------------------------------------------

#[test]
fn clock_target_must_be_positive() {
    for bad in [0, -1, i64::MIN] {
        let err = SlaClock::start(utc(2026, 6, 8, 8, 0), bad).unwrap_err();
        assert_eq!(fields(&err), ["target_minutes"]);
    }
}

#[test]
fn clock_pauses_and_resumes() {
    let cal = berlin_office();
    // Monday 2026-06-08 09:00 CEST = 07:00 UTC; target 3 hours.
    let start = utc(2026, 6, 8, 7, 0);
    let mut clock = SlaClock::start(start, 180).unwrap();
    assert_eq!(clock.due_at(&cal), Some(utc(2026, 6, 8, 10, 0)));
    assert_eq!(clock.elapsed(&cal, utc(2026, 6, 8, 8, 0)), 60);
    assert_eq!(clock.remaining(&cal, utc(2026, 6, 8, 8, 0)), 120);

    // Pending on the customer from 10:00 to 15:00 CEST.
    clock.pause(&cal, utc(2026, 6, 8, 8, 0));
    assert!(clock.is_paused());
    assert_eq!(clock.due_at(&cal), None);
    assert_eq!(clock.elapsed(&cal, utc(2026, 6, 8, 12, 0)), 60);
    assert!(!clock.is_breached(&cal, utc(2026, 6, 20, 0, 0)));
    // Pausing again is a no-op.
    let before = clock.clone();
    clock.pause(&cal, utc(2026, 6, 8, 10, 0));
    assert_eq!(clock, before);

    clock.resume(utc(2026, 6, 8, 13, 0));
    // Resuming again is a no-op.
    let before = clock.clone();
    clock.resume(utc(2026, 6, 8, 14, 0));
    assert_eq!(clock, before);
    assert_eq!(
        clock.state(),
        ClockState::Running {
            since: utc(2026, 6, 8, 13, 0)
        }
    );
    // 120 minutes left at 15:00 CEST: 15:00-17:00 is exactly enough.
    let due = utc(2026, 6, 8, 15, 0);
    assert_eq!(clock.due_at(&cal), Some(due));
    assert!(!clock.is_breached(&cal, due));
    assert_eq!(clock.remaining(&cal, due), 0);
    // After 17:00 it is breached even though no working time has passed.
    assert!(clock.is_breached(&cal, due + TimeDelta::seconds(1)));
    assert!(clock.is_breached(&cal, utc(2026, 6, 8, 16, 0)));
    assert_eq!(clock.elapsed(&cal, utc(2026, 6, 9, 7, 0)), 180);
    assert_eq!(clock.elapsed(&cal, utc(2026, 6, 9, 8, 0)), 240);

    // Paused after the breach, the breach stays and due_at is None until resumed.
    clock.pause(&cal, utc(2026, 6, 9, 8, 0));
    assert_eq!(clock.consumed_seconds(), 240 * 60);
    assert_eq!(clock.due_at(&cal), None);
    assert_eq!(clock.reached_at(&cal), Some(due));
    assert!(clock.is_breached(&cal, utc(2026, 6, 9, 9, 0)));
    clock.resume(utc(2026, 6, 10, 8, 0));
    assert_eq!(clock.due_at(&cal), Some(due));
}

#[test]
fn clock_started_outside_working_time() {
    let cal = berlin_office();
    // Saturday: counting begins Monday 09:00 CEST.
    let clock = SlaClock::start(utc(2026, 6, 6, 10, 0), 30).unwrap();
    assert_eq!(clock.due_at(&cal), Some(utc(2026, 6, 8, 7, 30)));
    assert_eq!(clock.elapsed(&cal, utc(2026, 6, 7, 10, 0)), 0);
    assert!(!clock.is_breached(&cal, utc(2026, 6, 7, 10, 0)));
    // Time going backwards counts nothing and does not panic.
    let mut clock = clock;
    clock.pause(&cal, utc(2026, 6, 1, 0, 0));
    assert_eq!(clock.consumed_seconds(), 0);
}

// --- Property tests against a minute-by-minute oracle -------------------------------------

fn at(start: DateTime<Utc>, minute: usize) -> DateTime<Utc> {
    start + TimeDelta::minutes(minute as i64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn arithmetic_matches_the_oracle(
        (raw, start) in case_strategy(),
        counts in prop::collection::vec(0i64..2500, 6),
        probes in prop::collection::vec(0usize..WINDOW, 8),
    ) {
        let cal = raw.build();
        let work = raw.minutes(start);
        let total = work.iter().filter(|w| **w).count() as i64;
        let window_end = at(start, WINDOW);
        prop_assert_eq!(cal.minutes_between(start, window_end), total);

        let mut counts = counts;
        counts.extend([0, 1, total, total + 1]);
        for n in counts {
            let got = cal.add_minutes(start, n);
            prop_assert_eq!(cal.minutes_between(start, got), n, "n = {}", n);
            if n == 0 {
                prop_assert!(cal.is_working(got));
                prop_assert_eq!(got, cal.next_working_instant(start));
            } else {
                prop_assert!(cal.is_working(got - TimeDelta::seconds(1)));
                prop_assert!(cal.is_working(got - TimeDelta::minutes(1)));
            }
            // The oracle: the n-th working minute (1-based), or the first one for n == 0.
            let wanted = n.max(1);
            let mut seen = 0;
            let mut expected = None;
            for (i, w) in work.iter().enumerate() {
                if *w {
                    seen += 1;
                    if seen == wanted {
                        expected = Some(if n == 0 { at(start, i) } else { at(start, i + 1) });
                        break;
                    }
                }
            }
            match expected {
                Some(e) => prop_assert_eq!(got, e, "n = {}", n),
                None => prop_assert!(got >= window_end, "n = {}: {} inside the window", n, got),
            }
        }

        for p in probes {
            let t = at(start, p);
            prop_assert_eq!(cal.is_working(t), work[p], "is_working({})", t);
            prop_assert_eq!(cal.is_working(t + TimeDelta::seconds(59)), work[p]);
            let prefix = work[..p].iter().filter(|w| **w).count() as i64;
            prop_assert_eq!(cal.minutes_between(start, t), prefix, "minutes_between(.., {})", t);
            let next = work[p..].iter().position(|w| *w);
            let got = cal.next_working_instant(t);
            match next {
                Some(k) => prop_assert_eq!(got, at(start, p + k)),
                None => prop_assert!(got >= window_end),
            }
        }
    }

    #[test]
    fn sla_clock_matches_the_oracle(
        (raw, start) in case_strategy(),
        target in 1i64..2500,
        ops in prop::collection::vec((any::<bool>(), 0usize..900), 0..8),
        tail in 0usize..1440,
    ) {
        let cal = raw.build();
        let work = raw.minutes(start);
        let mut clock = SlaClock::start(start, target).unwrap();
        // The oracle's view: whether each minute of the window counts.
        let mut counts = work.clone();
        let mut paused_from: Option<usize> = None;
        let mut t = 0usize;
        for (pause, gap) in ops {
            t += gap;
            if pause {
                clock.pause(&cal, at(start, t));
                if paused_from.is_none() {
                    paused_from = Some(t);
                }
            } else {
                clock.resume(at(start, t));
                if let Some(p) = paused_from.take() {
                    counts[p..t].iter_mut().for_each(|c| *c = false);
                }
            }
        }
        if let Some(p) = paused_from {
            counts[p..].iter_mut().for_each(|c| *c = false);
        }
        let now = t + tail;
        let counted = counts[..now].iter().filter(|c| **c).count() as i64;
        prop_assert_eq!(clock.elapsed(&cal, at(start, now)), counted);
        prop_assert_eq!(clock.remaining(&cal, at(start, now)), (target - counted).max(0));
        prop_assert_eq!(clock.is_paused(), paused_from.is_some());

        // The instant the target is reached: the end of the target-th counted minute.
        let mut seen = 0;
        let reached = counts.iter().position(|c| {
            seen += i64::from(*c);
            seen == target
        }).map(|i| at(start, i + 1));
        match (paused_from, reached) {
            (Some(_), reached) => {
                prop_assert_eq!(clock.due_at(&cal), None);
                prop_assert_eq!(clock.reached_at(&cal), reached);
            }
            (None, Some(r)) => prop_assert_eq!(clock.due_at(&cal), Some(r)),
            (None, None) => {
                let due = clock.due_at(&cal);
                prop_assert!(due.is_some_and(|d| d >= at(start, WINDOW)), "{:?}", due);
            }
        }
        let breached = reached.is_some_and(|r| at(start, now) > r);
        prop_assert_eq!(clock.is_breached(&cal, at(start, now)), breached);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Instants off the minute grid: adding and measuring stay consistent, and measuring
    /// is additive.
    #[test]
    fn off_grid_instants_are_consistent(
        (raw, start) in case_strategy(),
        nanos in 0i64..3 * 86_400_000_000_000,
        n in 0i64..5000,
        split in 0i64..5 * 86_400_000_000_000,
    ) {
        let cal = raw.build();
        let s = start + TimeDelta::nanoseconds(nanos);
        let end = cal.add_minutes(s, n);
        prop_assert_eq!(cal.minutes_between(s, end), n);
        prop_assert_eq!(cal.duration_between(s, end), TimeDelta::minutes(n));
        if n == 0 {
            prop_assert!(cal.is_working(end));
        }
        let mid = s + TimeDelta::nanoseconds(split);
        let later = mid + TimeDelta::nanoseconds(split / 3);
        prop_assert_eq!(
            cal.duration_between(s, mid) + cal.duration_between(mid, later),
            cal.duration_between(s, later)
        );
        prop_assert!(cal.duration_between(s, mid) <= mid - s);
    }
}
