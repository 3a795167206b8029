//! Business calendars and business-time arithmetic.
//!
//! A [`BusinessCalendar`] is a time zone, weekly working hours and dated exceptions
//! (holidays, or a date with its own hours). It answers "is this instant working time",
//! "when is the next working instant", "which instant is `n` working minutes after this one"
//! and "how many working minutes lie between these two instants".
//!
//! # Decisions
//!
//! * **Instants are exact.** Arithmetic works on exact UTC instants (the working-time
//!   boundaries fall on whole seconds; a sub-second start is kept as is). Counts are minutes:
//!   [`BusinessCalendar::add_minutes`] adds exactly `n * 60` seconds of working time and
//!   [`BusinessCalendar::minutes_between`] returns the whole minutes of working time
//!   (truncated). So `minutes_between(s, add_minutes(s, n)) == n` for every `n >= 0`.
//! * **Working hours are minutes of the day.** An [`Interval`] is `[start, end)` in minutes
//!   after local midnight, `0..=1440`; `end == 1440` means 24:00, the end of the day. Its
//!   text form is `"09:00-17:00"` (and `"00:00-24:00"`).
//! * **Touching intervals are fine and are merged** (`09:00-12:00` and `12:00-13:00` become
//!   `09:00-13:00`); overlapping ones are a validation error. A valid calendar's intervals
//!   are kept sorted and merged, so a calendar compares equal to the normalised form of its
//!   spec.
//! * **Real elapsed time counts.** A local working interval `[start, end)` on a date covers
//!   every instant whose local wall-clock time is on that date within the interval. On a
//!   spring-forward day the local times that do not exist are skipped (a 00:00-06:00 shift
//!   in Berlin on 2026-03-29 is 5 hours); on a fall-back day the repeated hour counts twice
//!   when it is within working hours (the same shift on 2026-10-25 is 7 hours).
//! * **Exceptions replace the regular hours of their date**: an empty list is a holiday, a
//!   non-empty list is that date's hours (an extra working day, or different hours).
//! * **Searches are bounded.** Walking forward never goes further than
//!   [`SEARCH_HORIZON_DAYS`] after the start (and never within two days of the limits of
//!   `chrono`'s range); see the individual methods for what happens at the bound. A valid
//!   calendar has working time every week, so only absurd inputs (centuries of minutes,
//!   or a century of dated holidays) reach it.
//!
//! The time zone's transitions are assumed to be more than six hours apart (true of every
//! zone in the tz database in practice).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::ControlFlow;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, Offset, TimeDelta, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use crmkit_core::{Result, ValidationErrors};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Minutes in a day: the largest value of [`Interval::end`] (24:00).
pub const MINUTES_PER_DAY: u16 = 1440;

/// How far (in days) the calendar searches forward from a start instant before giving up:
/// about a hundred years.
pub const SEARCH_HORIZON_DAYS: i64 = 36_525;

const SECS_PER_DAY: i64 = 86_400;
/// Days from 0001-01-01 (day 1 of the common era) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;
/// Length of the chunks the walk checks for a time-zone transition.
const CHUNK_SECS: i64 = 6 * 3600;

/// A working interval `[start, end)` on one day, in minutes after local midnight.
///
/// A valid interval has `start < end <= 1440`; `end == 1440` is 24:00, the end of the day.
/// Values are not checked here but when a calendar is built, so that every problem can be
/// reported at once. Serialized as text: `"09:00-17:00"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    /// First working minute of the interval, in minutes after local midnight (`0..1440`).
    pub start: u16,
    /// End of the interval (exclusive), in minutes after local midnight (`1..=1440`).
    pub end: u16,
}

impl Interval {
    /// An interval from minute `start` to minute `end` of the day.
    pub const fn new(start: u16, end: u16) -> Self {
        Interval { start, end }
    }

    /// An interval from `start_hour:start_minute` to `end_hour:end_minute`
    /// (`Interval::hm(9, 0, 17, 30)` is 09:00-17:30; `Interval::hm(18, 0, 24, 0)` ends at
    /// midnight). Values saturate rather than overflow; out-of-range values are rejected
    /// when the calendar is built.
    pub const fn hm(start_hour: u16, start_minute: u16, end_hour: u16, end_minute: u16) -> Self {
        Interval {
            start: start_hour.saturating_mul(60).saturating_add(start_minute),
            end: end_hour.saturating_mul(60).saturating_add(end_minute),
        }
    }

    /// The whole day, 00:00-24:00.
    pub const fn all_day() -> Self {
        Interval {
            start: 0,
            end: MINUTES_PER_DAY,
        }
    }

    /// Length in minutes of local wall-clock time (0 for an invalid interval).
    pub const fn minutes(&self) -> u16 {
        self.end.saturating_sub(self.start)
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// Why a text interval could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseIntervalError(String);

impl fmt::Display for ParseIntervalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid interval {:?}: expected HH:MM-HH:MM, e.g. 09:00-17:00",
            self.0
        )
    }
}

impl std::error::Error for ParseIntervalError {}

fn parse_time_of_day(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    if !h.bytes().all(|b| b.is_ascii_digit()) || !m.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    if m >= 60 {
        return None;
    }
    Some(h * 60 + m)
}

impl FromStr for Interval {
    type Err = ParseIntervalError;

    /// Parses `HH:MM-HH:MM`. Hours above 24 parse (and are rejected when the calendar is
    /// built, naming the field); minutes must be `00..=59`.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let err = || ParseIntervalError(s.to_string());
        let (a, b) = s.split_once('-').ok_or_else(err)?;
        let start = parse_time_of_day(a).ok_or_else(err)?;
        let end = parse_time_of_day(b).ok_or_else(err)?;
        Ok(Interval { start, end })
    }
}

impl Serialize for Interval {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Regular working hours for each day of the week. A day without intervals is a day off.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WeeklyHours {
    /// Monday's working intervals.
    pub monday: Vec<Interval>,
    /// Tuesday's working intervals.
    pub tuesday: Vec<Interval>,
    /// Wednesday's working intervals.
    pub wednesday: Vec<Interval>,
    /// Thursday's working intervals.
    pub thursday: Vec<Interval>,
    /// Friday's working intervals.
    pub friday: Vec<Interval>,
    /// Saturday's working intervals.
    pub saturday: Vec<Interval>,
    /// Sunday's working intervals.
    pub sunday: Vec<Interval>,
}

impl WeeklyHours {
    /// The intervals of `day`.
    pub fn get(&self, day: Weekday) -> &[Interval] {
        match day {
            Weekday::Mon => &self.monday,
            Weekday::Tue => &self.tuesday,
            Weekday::Wed => &self.wednesday,
            Weekday::Thu => &self.thursday,
            Weekday::Fri => &self.friday,
            Weekday::Sat => &self.saturday,
            Weekday::Sun => &self.sunday,
        }
    }

    /// The intervals of `day`, to change them.
    pub fn get_mut(&mut self, day: Weekday) -> &mut Vec<Interval> {
        match day {
            Weekday::Mon => &mut self.monday,
            Weekday::Tue => &mut self.tuesday,
            Weekday::Wed => &mut self.wednesday,
            Weekday::Thu => &mut self.thursday,
            Weekday::Fri => &mut self.friday,
            Weekday::Sat => &mut self.saturday,
            Weekday::Sun => &mut self.sunday,
        }
    }
}

/// The days of the week, Monday first, with their field names.
const WEEK: [(Weekday, &str); 7] = [
    (Weekday::Mon, "monday"),
    (Weekday::Tue, "tuesday"),
    (Weekday::Wed, "wednesday"),
    (Weekday::Thu, "thursday"),
    (Weekday::Fri, "friday"),
    (Weekday::Sat, "saturday"),
    (Weekday::Sun, "sunday"),
];

/// The unvalidated description of a calendar; [`BusinessCalendar::new`] checks it.
///
/// This is also the serialized form of a [`BusinessCalendar`]:
///
/// ```json
/// {"time_zone": "Europe/Berlin",
///  "hours": {"monday": ["09:00-12:00", "13:00-17:00"], "saturday": []},
///  "exceptions": {"2026-12-25": [], "2026-12-19": ["10:00-14:00"]}}
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarSpec {
    /// IANA time zone name, e.g. `Europe/Berlin`.
    pub time_zone: String,
    /// Regular weekly working hours, in local time.
    #[serde(default)]
    pub hours: WeeklyHours,
    /// Dated exceptions, replacing the regular hours of their date: an empty list is a
    /// holiday, a non-empty list is that date's working hours.
    #[serde(default)]
    pub exceptions: BTreeMap<NaiveDate, Vec<Interval>>,
}

impl CalendarSpec {
    /// A spec in `time_zone` with no hours and no exceptions yet.
    pub fn new(time_zone: impl Into<String>) -> Self {
        CalendarSpec {
            time_zone: time_zone.into(),
            ..CalendarSpec::default()
        }
    }
}

/// A validated business calendar: time zone, weekly hours and dated exceptions.
///
/// Build one with [`BusinessCalendar::new`] or [`BusinessCalendar::builder`]. Serializes as
/// its (normalised) [`CalendarSpec`]; deserializing validates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CalendarSpec", into = "CalendarSpec")]
pub struct BusinessCalendar {
    tz: Tz,
    /// Validated and normalised: each day's intervals sorted, touching ones merged.
    spec: CalendarSpec,
}

/// Builds a [`BusinessCalendar`]; nothing is checked until [`CalendarBuilder::build`].
#[derive(Clone, Debug)]
pub struct CalendarBuilder {
    spec: CalendarSpec,
}

impl CalendarBuilder {
    /// Sets the regular hours of `day` (replacing earlier ones).
    pub fn hours(mut self, day: Weekday, intervals: impl IntoIterator<Item = Interval>) -> Self {
        *self.spec.hours.get_mut(day) = intervals.into_iter().collect();
        self
    }

    /// Sets the same regular hours Monday to Friday.
    pub fn weekdays(mut self, intervals: impl IntoIterator<Item = Interval>) -> Self {
        let intervals: Vec<Interval> = intervals.into_iter().collect();
        for (day, _) in &WEEK[..5] {
            *self.spec.hours.get_mut(*day) = intervals.clone();
        }
        self
    }

    /// Makes `date` a holiday (replacing an earlier exception on that date).
    pub fn holiday(mut self, date: NaiveDate) -> Self {
        self.spec.exceptions.insert(date, Vec::new());
        self
    }

    /// Gives `date` its own working hours (replacing an earlier exception on that date).
    /// An empty list makes it a holiday.
    pub fn exception(
        mut self,
        date: NaiveDate,
        intervals: impl IntoIterator<Item = Interval>,
    ) -> Self {
        self.spec
            .exceptions
            .insert(date, intervals.into_iter().collect());
        self
    }

    /// Validates and builds the calendar (see [`BusinessCalendar::new`]).
    pub fn build(self) -> Result<BusinessCalendar> {
        BusinessCalendar::new(self.spec)
    }
}

/// Checks one day's intervals, pushing errors under `field[i]`; returns the valid ones
/// sorted with touching intervals merged.
fn check_day(errors: &mut ValidationErrors, field: &str, intervals: &[Interval]) -> Vec<Interval> {
    let mut valid: Vec<(usize, Interval)> = Vec::with_capacity(intervals.len());
    for (i, iv) in intervals.iter().enumerate() {
        let name = format!("{field}[{i}]");
        let mut ok = true;
        if iv.start >= MINUTES_PER_DAY {
            errors.push(
                &name,
                format!(
                    "start {:02}:{:02} is out of range: it must be before 24:00",
                    iv.start / 60,
                    iv.start % 60
                ),
            );
            ok = false;
        }
        if iv.end > MINUTES_PER_DAY {
            errors.push(
                &name,
                format!(
                    "end {:02}:{:02} is out of range: it must be at most 24:00",
                    iv.end / 60,
                    iv.end % 60
                ),
            );
            ok = false;
        }
        if ok && iv.end <= iv.start {
            errors.push(
                &name,
                format!("interval {iv} is empty or inverted: its end must be after its start"),
            );
            ok = false;
        }
        if ok {
            valid.push((i, *iv));
        }
    }
    valid.sort_by_key(|(i, iv)| (iv.start, iv.end, *i));
    let mut merged: Vec<Interval> = Vec::with_capacity(valid.len());
    // The valid interval reaching furthest so far, with its index.
    let mut furthest: Option<(usize, Interval)> = None;
    for (i, iv) in valid {
        if let Some((j, prev)) = furthest
            && iv.start < prev.end
        {
            errors.push(
                format!("{field}[{i}]"),
                format!("interval {iv} overlaps {field}[{j}] ({prev})"),
            );
        }
        if furthest.is_none_or(|(_, prev)| iv.end > prev.end) {
            furthest = Some((i, iv));
        }
        match merged.last_mut() {
            Some(last) if iv.start <= last.end => last.end = last.end.max(iv.end),
            _ => merged.push(iv),
        }
    }
    merged
}

impl TryFrom<CalendarSpec> for BusinessCalendar {
    type Error = crmkit_core::Error;

    fn try_from(spec: CalendarSpec) -> Result<Self> {
        BusinessCalendar::new(spec)
    }
}

impl From<BusinessCalendar> for CalendarSpec {
    fn from(cal: BusinessCalendar) -> Self {
        cal.spec
    }
}

/// The local date `days` days after 1970-01-01.
fn date_from_epoch_days(days: i64) -> Option<NaiveDate> {
    let ce = i32::try_from(days.checked_add(UNIX_EPOCH_DAYS_FROM_CE)?).ok()?;
    NaiveDate::from_num_days_from_ce_opt(ce)
}

fn instant(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or(if secs < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// The first and last second the walk looks at: two days inside chrono's range, so that
/// local times and dates always exist.
fn walk_bounds() -> (i64, i64) {
    (
        DateTime::<Utc>::MIN_UTC.timestamp() + 2 * SECS_PER_DAY,
        DateTime::<Utc>::MAX_UTC.timestamp() - 2 * SECS_PER_DAY,
    )
}

impl BusinessCalendar {
    /// Validates `spec` and builds the calendar.
    ///
    /// Every problem is reported in one [`crmkit_core::Error::Validation`]:
    /// * `time_zone`: not an IANA time zone name;
    /// * `hours.<weekday>[i]` / `exceptions[<date>][i]`: a start at or after 24:00, an end
    ///   after 24:00, an empty or inverted interval (end at or before start), or an interval
    ///   overlapping an earlier one of the same day (touching is fine);
    /// * `hours`: the regular week has no working time at all (exceptions cannot make up
    ///   for that).
    pub fn new(spec: CalendarSpec) -> Result<Self> {
        let mut errors = ValidationErrors::new();
        let tz = match spec.time_zone.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                errors.push(
                    "time_zone",
                    format!(
                        "unknown time zone {:?}: expected an IANA name such as Europe/Berlin",
                        spec.time_zone
                    ),
                );
                None
            }
        };
        let mut normal = CalendarSpec {
            time_zone: spec.time_zone.clone(),
            hours: WeeklyHours::default(),
            exceptions: BTreeMap::new(),
        };
        let mut any_work = false;
        for (day, name) in WEEK {
            let merged = check_day(&mut errors, &format!("hours.{name}"), spec.hours.get(day));
            any_work |= !merged.is_empty();
            *normal.hours.get_mut(day) = merged;
        }
        for (date, intervals) in &spec.exceptions {
            let merged = check_day(&mut errors, &format!("exceptions[{date}]"), intervals);
            normal.exceptions.insert(*date, merged);
        }
        if !any_work {
            errors.push("hours", "the regular week has no working time");
        }
        errors.into_result()?;
        match tz {
            Some(tz) => Ok(BusinessCalendar { tz, spec: normal }),
            // Unreachable: an unknown zone was pushed as an error above.
            None => Err(crmkit_core::Error::validation(
                "time_zone",
                "unknown time zone",
            )),
        }
    }

    /// A builder for a calendar in the IANA time zone `time_zone`.
    pub fn builder(time_zone: impl Into<String>) -> CalendarBuilder {
        CalendarBuilder {
            spec: CalendarSpec::new(time_zone),
        }
    }

    /// The calendar's time zone.
    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// The normalised spec: intervals sorted, touching ones merged.
    pub fn spec(&self) -> &CalendarSpec {
        &self.spec
    }

    /// The working intervals of the local `date`: its exception if it has one, else the
    /// regular hours of its weekday. Empty on holidays and days off.
    pub fn hours_on(&self, date: NaiveDate) -> &[Interval] {
        if !self.spec.exceptions.is_empty()
            && let Some(intervals) = self.spec.exceptions.get(&date)
        {
            return intervals;
        }
        self.spec.hours.get(date.weekday())
    }

    /// Whether `at` is working time.
    pub fn is_working(&self, at: DateTime<Utc>) -> bool {
        // Working-time boundaries are whole seconds, so the second containing `at` decides.
        let t = at.timestamp();
        self.walk(t, t.saturating_add(1), |a, b| {
            ControlFlow::Break(a <= t && t < b)
        })
        .unwrap_or(false)
    }

    /// The first working instant at or after `at` (`at` itself if it is working time).
    ///
    /// Saturates at [`DateTime::<Utc>::MAX_UTC`] if there is no working time within
    /// [`SEARCH_HORIZON_DAYS`] (only possible with a century of dated holidays, or at the
    /// end of chrono's range).
    pub fn next_working_instant(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        self.checked_add_duration(at, TimeDelta::zero())
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// The instant at which `minutes` minutes of working time have passed, counting from
    /// `start` (or from the next working instant, if `start` is outside working time).
    ///
    /// * `minutes == 0` returns [`next_working_instant(start)`](Self::next_working_instant).
    /// * For `minutes > 0` the result is the end of the last working minute: the instant
    ///   just before it is working time, the result itself may not be (17:00 for a day
    ///   ending at 17:00, not the next morning).
    /// * Negative `minutes` count as 0. If the result lies beyond
    ///   [`SEARCH_HORIZON_DAYS`] (about a century) after `start` this saturates at
    ///   [`DateTime::<Utc>::MAX_UTC`]; use [`checked_add_minutes`](Self::checked_add_minutes)
    ///   to tell.
    pub fn add_minutes(&self, start: DateTime<Utc>, minutes: i64) -> DateTime<Utc> {
        self.checked_add_minutes(start, minutes.max(0))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Like [`add_minutes`](Self::add_minutes), but `None` for negative `minutes` and for a
    /// result beyond the search horizon.
    pub fn checked_add_minutes(&self, start: DateTime<Utc>, minutes: i64) -> Option<DateTime<Utc>> {
        self.checked_add_duration(start, TimeDelta::try_minutes(minutes)?)
    }

    /// The instant at which `amount` of working time has passed, counting from `start`
    /// (exact to the nanosecond; see [`add_minutes`](Self::add_minutes)). `None` for a
    /// negative amount and for a result beyond the search horizon.
    pub fn checked_add_duration(
        &self,
        start: DateTime<Utc>,
        amount: TimeDelta,
    ) -> Option<DateTime<Utc>> {
        if amount < TimeDelta::zero() {
            return None;
        }
        let from = start.timestamp();
        let until = from.saturating_add(SEARCH_HORIZON_DAYS * SECS_PER_DAY);
        let mut rest = amount;
        self.walk(from, until, |a, b| {
            let a = instant(a).max(start);
            let b = instant(b);
            if b <= a {
                return ControlFlow::Continue(());
            }
            let len = b - a;
            if rest <= len {
                ControlFlow::Break(a + rest)
            } else {
                rest -= len;
                ControlFlow::Continue(())
            }
        })
    }

    /// Whole minutes of working time in `[from, to)` (truncated); 0 if `to <= from`.
    ///
    /// Only the first [`SEARCH_HORIZON_DAYS`] (about a century) after `from` are counted.
    pub fn minutes_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
        self.duration_between(from, to).num_minutes()
    }

    /// Working time in `[from, to)`, exact; zero if `to <= from`.
    ///
    /// Only the first [`SEARCH_HORIZON_DAYS`] (about a century) after `from` are counted.
    pub fn duration_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> TimeDelta {
        let mut total = TimeDelta::zero();
        if to <= from {
            return total;
        }
        let start = from.timestamp();
        // `to` rounded up to a whole second.
        let end = to
            .timestamp()
            .saturating_add(i64::from(to.timestamp_subsec_nanos() > 0));
        let end = end.min(start.saturating_add(SEARCH_HORIZON_DAYS * SECS_PER_DAY));
        let _: Option<()> = self.walk(start, end, |a, b| {
            let a = instant(a).max(from);
            let b = instant(b).min(to);
            if b > a {
                total += b - a;
            }
            ControlFlow::Continue(())
        });
        total
    }

    /// The UTC offset in seconds at UTC second `t`.
    fn offset_at(&self, t: i64) -> i64 {
        match DateTime::from_timestamp(t, 0) {
            Some(dt) => i64::from(
                self.tz
                    .offset_from_utc_datetime(&dt.naive_utc())
                    .fix()
                    .local_minus_utc(),
            ),
            None => 0,
        }
    }

    /// Calls `f` with the working time in `[from, until)` (UTC seconds) as spans `[a, b)`
    /// of UTC seconds, in order, until it breaks. Spans are disjoint and may touch.
    fn walk<T>(
        &self,
        from: i64,
        until: i64,
        mut f: impl FnMut(i64, i64) -> ControlFlow<T>,
    ) -> Option<T> {
        let (lo, hi) = walk_bounds();
        let mut cursor = from.max(lo);
        let until = until.min(hi);
        while cursor < until {
            let chunk_end = cursor.saturating_add(CHUNK_SECS).min(until);
            let offset = self.offset_at(cursor);
            // The offset is constant on [cursor, segment_end).
            let segment_end = if self.offset_at(chunk_end) == offset {
                chunk_end
            } else {
                // Transitions are on whole seconds: bisect to the first second with a new
                // offset. Invariant: offset_at(a) == offset != offset_at(b).
                let (mut a, mut b) = (cursor, chunk_end);
                while b - a > 1 {
                    let mid = a + (b - a) / 2;
                    if self.offset_at(mid) == offset {
                        a = mid;
                    } else {
                        b = mid;
                    }
                }
                b
            };
            // Local wall-clock seconds (as if UTC) covered by the segment.
            let (local_a, local_b) = (cursor + offset, segment_end + offset);
            let mut day = local_a.div_euclid(SECS_PER_DAY);
            while day * SECS_PER_DAY < local_b {
                let date = date_from_epoch_days(day)?;
                let midnight = day * SECS_PER_DAY;
                for iv in self.hours_on(date) {
                    let s = (midnight + i64::from(iv.start) * 60).max(local_a);
                    let e = (midnight + i64::from(iv.end) * 60).min(local_b);
                    if s < e
                        && let ControlFlow::Break(t) = f(s - offset, e - offset)
                    {
                        return Some(t);
                    }
                }
                day += 1;
            }
            cursor = segment_end;
        }
        None
    }
}
