//! Calendar export: a user's tasks and meetings as iCalendar (RFC 5545).
//!
//! [`to_icalendar`] is a pure function: the caller selects the activities (for instance a
//! user's open tasks and meetings) and the reminders to show, and gets the text of one
//! `VCALENDAR` back.
//!
//! # What is written
//!
//! * Tasks become `VTODO`, meetings `VEVENT`; calls, notes, logged emails and soft-deleted
//!   activities are skipped.
//! * `UID` is `<activity id>@crmkit`; `DTSTAMP` is `now`; `CREATED` and `LAST-MODIFIED`
//!   come from the activity.
//! * Task priority maps onto the RFC 5545 scale (1 highest, 9 lowest; 1-4 is "high",
//!   5 "medium", 6-9 "low" for three-level clients): urgent = 1, high = 2, normal = 5,
//!   low = 9.
//! * Task status: open = `NEEDS-ACTION`, in progress = `IN-PROCESS`, done = `COMPLETED`,
//!   cancelled = `CANCELLED`; `completed_at` is written as `COMPLETED` (UTC).
//! * A task's recurrence becomes an `RRULE` anchored at a `DTSTART` equal to the due
//!   value (a recurrence without a due time is not written: it has nothing to anchor
//!   to). `COUNT` is the number of occurrences left, counting this task
//!   (`count - occurrence + 1`), because the exported task is the current occurrence.
//!   A monthly day above 28 is written as `BYMONTHDAY=28,...,day;BYSETPOS=-1`, which is
//!   "that day, or the month's last day if shorter" like the model. `UNTIL` is a DATE for
//!   an all-day task, and the end of the local day in UTC for a timed task.
//! * A meeting's `outcome_notes` is its `DESCRIPTION`, `location` its `LOCATION`, `link`
//!   its `URL`. Attendees are not written (`ATTENDEE` needs a calendar address).
//! * Each reminder whose activity is exported becomes a `VALARM` with `ACTION:DISPLAY`
//!   and an absolute trigger (`TRIGGER;VALUE=DATE-TIME:...Z`). Which reminders to pass
//!   (only the user's own, only undelivered ones) is the caller's choice.
//!
//! # Time zones
//!
//! A meeting's start and end and a timed task's due time are written as local times with
//! a `TZID` parameter naming the IANA zone they were given in, so that calendar apps show
//! them in that zone and recurrences keep their wall-clock time across daylight-saving
//! changes. For every zone used, a `VTIMEZONE` is generated from the chrono-tz database:
//! its transitions are found by probing the zone's offset every six hours and bisecting
//! to the second, over the years the exported times span (from the year before the first
//! to the year after the last, extended to cover a recurrence's expected end, by at most
//! 30 years). Each transition is one `STANDARD` or `DAYLIGHT` observance with an explicit
//! `DTSTART`, `TZOFFSETFROM`, `TZOFFSETTO` and `TZNAME`, preceded by one observance for the
//! offset in force at the start of the range.
//!
//! A local time in the repeated hour of a "fall back" change means the first of the two
//! instants (RFC 5545, 3.3.5); an instant in the second one is therefore written in UTC
//! (`...Z`) instead, which is exact. `DTSTAMP`, `CREATED`, `LAST-MODIFIED`, `COMPLETED`
//! and alarm triggers are always UTC. All-day due dates are `VALUE=DATE` (floating).
//! Sub-second precision is dropped.
//!
//! # Errors
//!
//! An unknown time zone name, a meeting ending before it starts, a recurrence with an
//! interval or count of zero or a monthly day outside 1-31, or a time outside the years
//! 1-9999 gives [`crmkit_core::Error::Validation`] listing every failing field
//! (`activities[2].details.time_zone`, ...).
//!
//! # Wire format
//!
//! Lines end in CRLF and are folded at 75 octets, never inside a UTF-8 character (and
//! never right after white space, so that parsers that trim line ends keep it). Text
//! values escape backslash, semicolon, comma and newline; other control characters
//! (except tab) are dropped. URIs have control characters and spaces percent-encoded.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset,
    SubsecRound, TimeZone, Timelike, Utc, Weekday,
};
use chrono_tz::{OffsetComponents, OffsetName, Tz};
use crmkit_core::{ActivityId, Result, ValidationErrors};

use crate::model::{
    Activity, ActivityDetails, Due, Frequency, Meeting, Priority, Recurrence, RecurrenceEnd,
    Reminder, Task, TaskStatus,
};

/// The `PRODID` of the calendars written.
pub const PRODID: &str = "-//crmkit//crmkit-activities//EN";

/// How far past the last exported time a recurrence may extend the `VTIMEZONE` range.
const MAX_RECURRENCE_YEARS: i64 = 30;

/// RFC 5545 text for a user's tasks (VTODO) and meetings (VEVENT); other kinds are skipped.
///
/// See the [module documentation](self) for the mapping, the time-zone handling and the
/// errors.
pub fn to_icalendar(
    calendar_name: &str,
    activities: &[Activity],
    reminders: &[Reminder],
    now: DateTime<Utc>,
) -> Result<String> {
    let mut errs = ValidationErrors::new();
    check_year(&mut errs, "now", now.year());

    let mut by_activity: HashMap<ActivityId, Vec<&Reminder>> = HashMap::new();
    for r in reminders {
        by_activity.entry(r.activity).or_default().push(r);
    }

    let mut zones = Zones::default();
    let mut body = Lines::default();
    for (i, a) in activities.iter().enumerate() {
        if a.deleted_at.is_some() {
            continue;
        }
        let field = format!("activities[{i}]");
        let alarms = by_activity.get(&a.id).map(Vec::as_slice).unwrap_or(&[]);
        for (j, r) in alarms.iter().enumerate() {
            check_year(
                &mut errs,
                &format!("reminders[{j}].remind_at"),
                r.remind_at.year(),
            );
        }
        match &a.details {
            ActivityDetails::Task(t) => {
                write_todo(&mut body, &mut zones, &mut errs, &field, a, t, alarms, now);
            }
            ActivityDetails::Meeting(m) => {
                write_event(&mut body, &mut zones, &mut errs, &field, a, m, alarms, now);
            }
            _ => {}
        }
    }
    errs.into_result()?;

    let mut out = Lines::default();
    out.line("BEGIN:VCALENDAR");
    out.line("VERSION:2.0");
    out.line(&format!("PRODID:{PRODID}"));
    out.line("CALSCALE:GREGORIAN");
    out.line(&format!("X-WR-CALNAME:{}", escape_text(calendar_name)));
    for (tz, range) in zones.0.values() {
        write_vtimezone(&mut out, *tz, range.0, range.1);
    }
    out.0.push_str(&body.0);
    out.line("END:VCALENDAR");
    Ok(out.0)
}

/// The zones used, by name, with the span of instants they must cover.
#[derive(Default)]
struct Zones(BTreeMap<String, (Tz, Span)>);

/// The first and last instant a zone must cover.
type Span = (DateTime<Utc>, DateTime<Utc>);

impl Zones {
    fn cover(&mut self, tz: Tz, at: DateTime<Utc>) {
        let e = self.0.entry(tz.name().to_owned()).or_insert((tz, (at, at)));
        e.1.0 = e.1.0.min(at);
        e.1.1 = e.1.1.max(at);
    }
}

/// Content lines being written (CRLF-terminated, folded).
#[derive(Default)]
struct Lines(String);

impl Lines {
    /// Appends one content line, folded at 75 octets.
    fn line(&mut self, line: &str) {
        let mut rest = line;
        let mut first = true;
        loop {
            let limit = if first { 75 } else { 74 };
            if !first {
                self.0.push(' ');
            }
            if rest.len() <= limit {
                self.0.push_str(rest);
                self.0.push_str("\r\n");
                return;
            }
            let mut cut = limit;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            // Do not end a segment with white space (some parsers trim line ends).
            let mut soft = cut;
            while let Some(c) = rest[..soft]
                .chars()
                .next_back()
                .filter(|c| c.is_whitespace())
            {
                soft -= c.len_utf8();
            }
            if soft > 0 {
                cut = soft;
            }
            self.0.push_str(&rest[..cut]);
            self.0.push_str("\r\n");
            rest = &rest[cut..];
            first = false;
        }
    }

    fn text(&mut self, name: &str, value: &str) {
        self.line(&format!("{name}:{}", escape_text(value)));
    }

    fn utc(&mut self, name: &str, at: DateTime<Utc>) {
        self.line(&format!("{name}:{}", fmt_utc(at)));
    }
}

/// A date-time value as written: local with a zone, or UTC.
enum Stamp {
    Zoned(Tz, NaiveDateTime),
    Utc(DateTime<Utc>),
    Date(NaiveDate),
}

impl Stamp {
    /// `at` in `tz` if the local time names exactly that instant, else UTC.
    fn zoned(tz: Tz, at: DateTime<Utc>, zones: &mut Zones) -> Stamp {
        let at = at.trunc_subsecs(0);
        let local = at.with_timezone(&tz).naive_local();
        let first = match tz.from_local_datetime(&local) {
            LocalResult::Single(x) => Some(x),
            LocalResult::Ambiguous(x, _) => Some(x),
            LocalResult::None => None,
        };
        if first.is_some_and(|x| x.with_timezone(&Utc) == at) {
            zones.cover(tz, at);
            Stamp::Zoned(tz, local)
        } else {
            Stamp::Utc(at)
        }
    }

    fn write(&self, out: &mut Lines, name: &str) {
        match self {
            Stamp::Zoned(tz, local) => {
                out.line(&format!("{name};TZID={}:{}", tz.name(), fmt_local(*local)))
            }
            Stamp::Utc(at) => out.utc(name, *at),
            Stamp::Date(d) => out.line(&format!("{name};VALUE=DATE:{}", fmt_date(*d))),
        }
    }
}

fn check_year(errs: &mut ValidationErrors, field: &str, year: i32) -> bool {
    let ok = (1..=9999).contains(&year);
    if !ok {
        errs.push(
            field,
            "outside the years 1 to 9999 that iCalendar can represent",
        );
    }
    ok
}

fn parse_zone(errs: &mut ValidationErrors, field: &str, name: &str) -> Option<Tz> {
    match Tz::from_str(name) {
        Ok(tz) => Some(tz),
        Err(_) => {
            errs.push(field, format!("unknown time zone {name:?}"));
            None
        }
    }
}

fn uid(a: &Activity) -> String {
    format!("UID:{}@crmkit", a.id)
}

fn common(out: &mut Lines, a: &Activity, now: DateTime<Utc>) {
    out.line(&uid(a));
    out.utc("DTSTAMP", now.trunc_subsecs(0));
    if (1..=9999).contains(&a.created_at.year()) {
        out.utc("CREATED", a.created_at.trunc_subsecs(0));
    }
    if (1..=9999).contains(&a.updated_at.year()) {
        out.utc("LAST-MODIFIED", a.updated_at.trunc_subsecs(0));
    }
    out.text("SUMMARY", &a.subject);
}

fn write_alarms(out: &mut Lines, a: &Activity, alarms: &[&Reminder]) {
    for r in alarms {
        out.line("BEGIN:VALARM");
        out.line("ACTION:DISPLAY");
        out.line(&format!(
            "TRIGGER;VALUE=DATE-TIME:{}",
            fmt_utc(r.remind_at.trunc_subsecs(0))
        ));
        let text = if a.subject.trim().is_empty() {
            "Reminder"
        } else {
            a.subject.as_str()
        };
        out.text("DESCRIPTION", text);
        out.line("END:VALARM");
    }
}

#[allow(clippy::too_many_arguments)]
fn write_event(
    out: &mut Lines,
    zones: &mut Zones,
    errs: &mut ValidationErrors,
    field: &str,
    a: &Activity,
    m: &Meeting,
    alarms: &[&Reminder],
    now: DateTime<Utc>,
) {
    let before = errs.errors.len();
    let tz = parse_zone(errs, &format!("{field}.details.time_zone"), &m.time_zone);
    check_year(errs, &format!("{field}.details.start"), m.start.year());
    check_year(errs, &format!("{field}.details.end"), m.end.year());
    if m.end < m.start {
        errs.push(
            format!("{field}.details.end"),
            "the meeting ends before it starts",
        );
    }
    let Some(tz) = tz else { return };
    if errs.errors.len() > before {
        return;
    }
    out.line("BEGIN:VEVENT");
    common(out, a, now);
    if let Some(d) = &m.outcome_notes {
        out.text("DESCRIPTION", d);
    }
    if let Some(l) = &m.location {
        out.text("LOCATION", l);
    }
    if let Some(u) = &m.link {
        out.line(&format!("URL:{}", escape_uri(u)));
    }
    Stamp::zoned(tz, m.start, zones).write(out, "DTSTART");
    // DTEND must be later than DTSTART: an instant meeting has no DTEND (RFC 5545 3.6.1).
    if m.end.trunc_subsecs(0) > m.start.trunc_subsecs(0) {
        Stamp::zoned(tz, m.end, zones).write(out, "DTEND");
    }
    write_alarms(out, a, alarms);
    out.line("END:VEVENT");
}

#[allow(clippy::too_many_arguments)]
fn write_todo(
    out: &mut Lines,
    zones: &mut Zones,
    errs: &mut ValidationErrors,
    field: &str,
    a: &Activity,
    t: &Task,
    alarms: &[&Reminder],
    now: DateTime<Utc>,
) {
    let before = errs.errors.len();
    let due = match &t.due {
        None => None,
        Some(Due::Date { date }) => {
            check_year(errs, &format!("{field}.details.due.date"), date.year());
            Some((Stamp::Date(*date), None))
        }
        Some(Due::At { at, time_zone }) => {
            check_year(errs, &format!("{field}.details.due.at"), at.year());
            parse_zone(errs, &format!("{field}.details.due.time_zone"), time_zone)
                .map(|tz| (Stamp::zoned(tz, *at, zones), Some((tz, *at))))
        }
    };
    if let Some(c) = t.completed_at {
        check_year(errs, &format!("{field}.details.completed_at"), c.year());
    }
    let rrule = match (&t.recurrence, &due) {
        (Some(r), Some((_, timed))) => rrule(
            errs,
            &format!("{field}.details.recurrence"),
            r,
            *timed,
            zones,
        ),
        _ => None,
    };
    if errs.errors.len() > before {
        return;
    }
    out.line("BEGIN:VTODO");
    common(out, a, now);
    if let Some(d) = &t.description {
        out.text("DESCRIPTION", d);
    }
    if let Some((stamp, _)) = &due {
        if rrule.is_some() {
            stamp.write(out, "DTSTART");
        }
        stamp.write(out, "DUE");
    }
    out.line(&format!("PRIORITY:{}", priority(t.priority)));
    out.line(&format!("STATUS:{}", status(t.status)));
    if let Some(c) = t.completed_at {
        out.utc("COMPLETED", c.trunc_subsecs(0));
    }
    if let Some(r) = rrule {
        out.line(&format!("RRULE:{r}"));
    }
    write_alarms(out, a, alarms);
    out.line("END:VTODO");
}

/// The RFC 5545 priority (1 highest, 9 lowest) of a task priority.
pub fn priority(p: Priority) -> u8 {
    match p {
        Priority::Urgent => 1,
        Priority::High => 2,
        Priority::Normal => 5,
        Priority::Low => 9,
    }
}

/// The RFC 5545 `VTODO` status of a task status.
pub fn status(s: TaskStatus) -> &'static str {
    match s {
        TaskStatus::Open => "NEEDS-ACTION",
        TaskStatus::InProgress => "IN-PROCESS",
        TaskStatus::Done => "COMPLETED",
        TaskStatus::Cancelled => "CANCELLED",
    }
}

fn weekday_code(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "MO",
        Weekday::Tue => "TU",
        Weekday::Wed => "WE",
        Weekday::Thu => "TH",
        Weekday::Fri => "FR",
        Weekday::Sat => "SA",
        Weekday::Sun => "SU",
    }
}

/// The RRULE value; `timed` is the zone and instant of a timed due (None: all-day).
fn rrule(
    errs: &mut ValidationErrors,
    field: &str,
    r: &Recurrence,
    timed: Option<(Tz, DateTime<Utc>)>,
    zones: &mut Zones,
) -> Option<String> {
    let before = errs.errors.len();
    if r.interval == 0 {
        errs.push(format!("{field}.interval"), "must be at least 1");
    }
    let mut rule;
    let unit_days: i64;
    match &r.frequency {
        Frequency::Daily => {
            rule = "FREQ=DAILY".to_owned();
            unit_days = 1;
        }
        Frequency::Weekly { weekdays } => {
            rule = "FREQ=WEEKLY".to_owned();
            unit_days = 7;
            let mut days: Vec<Weekday> = weekdays.clone();
            days.sort_by_key(Weekday::num_days_from_monday);
            days.dedup();
            if !days.is_empty() {
                let codes: Vec<&str> = days.into_iter().map(weekday_code).collect();
                rule.push_str(&format!(";BYDAY={}", codes.join(",")));
            }
        }
        Frequency::Monthly { day } => {
            rule = "FREQ=MONTHLY".to_owned();
            unit_days = 31;
            match *day {
                1..=28 => rule.push_str(&format!(";BYMONTHDAY={day}")),
                29..=31 => {
                    let days: Vec<String> = (28..=*day).map(|d| d.to_string()).collect();
                    rule.push_str(&format!(";BYMONTHDAY={};BYSETPOS=-1", days.join(",")));
                }
                _ => errs.push(format!("{field}.frequency.day"), "must be from 1 to 31"),
            }
        }
    }
    rule.push_str(&format!(";INTERVAL={}", r.interval));
    match &r.end {
        RecurrenceEnd::Count { count } => {
            if *count == 0 {
                errs.push(format!("{field}.end.count"), "must be at least 1");
            }
            let left = count.saturating_sub(r.occurrence.max(1) - 1).max(1);
            rule.push_str(&format!(";COUNT={left}"));
            if let Some((tz, at)) = timed {
                let span = (unit_days * i64::from(r.interval) * i64::from(left))
                    .min(MAX_RECURRENCE_YEARS * 366);
                if let Some(end) = at.checked_add_signed(Duration::days(span))
                    && (1..=9999).contains(&end.year())
                {
                    zones.cover(tz, end);
                }
            }
        }
        RecurrenceEnd::Until { date } => {
            if !check_year(errs, &format!("{field}.end.date"), date.year()) {
                return None;
            }
            match timed {
                None => rule.push_str(&format!(";UNTIL={}", fmt_date(*date))),
                Some((tz, at)) => {
                    let last =
                        date.and_time(NaiveTime::from_hms_opt(23, 59, 59).unwrap_or_default());
                    let until = match tz.from_local_datetime(&last) {
                        LocalResult::Single(x) | LocalResult::Ambiguous(_, x) => {
                            x.with_timezone(&Utc)
                        }
                        LocalResult::None => last.and_utc(),
                    };
                    rule.push_str(&format!(";UNTIL={}", fmt_utc(until)));
                    let cap = at + Duration::days(MAX_RECURRENCE_YEARS * 366);
                    zones.cover(tz, until.min(cap));
                }
            }
        }
    }
    (errs.errors.len() == before).then_some(rule)
}

fn fmt_date(d: NaiveDate) -> String {
    format!("{:04}{:02}{:02}", d.year(), d.month(), d.day())
}

fn fmt_local(t: NaiveDateTime) -> String {
    format!(
        "{}T{:02}{:02}{:02}",
        fmt_date(t.date()),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn fmt_utc(t: DateTime<Utc>) -> String {
    format!("{}Z", fmt_local(t.naive_utc()))
}

/// A UTC offset as `+hhmm` (or `+hhmmss`).
fn fmt_offset(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let s = secs.unsigned_abs();
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    if sec == 0 {
        format!("{sign}{h:02}{m:02}")
    } else {
        format!("{sign}{h:02}{m:02}{sec:02}")
    }
}

/// Escapes a TEXT value (RFC 5545 3.3.11).
pub fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\\n");
            }
            '\t' => out.push('\t'),
            c if c.is_ascii_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A URI value with control characters and spaces percent-encoded.
fn escape_uri(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_control() || c == ' ' {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The offset state of a zone at an instant.
#[derive(PartialEq, Eq, Clone)]
struct OffsetState {
    utc: i32,
    dst: bool,
    name: Option<String>,
}

fn state(tz: Tz, at: DateTime<Utc>) -> OffsetState {
    let o = tz.offset_from_utc_datetime(&at.naive_utc());
    OffsetState {
        utc: o.fix().local_minus_utc(),
        dst: !o.dst_offset().is_zero(),
        name: o.abbreviation().map(str::to_owned),
    }
}

fn write_observance(
    out: &mut Lines,
    onset_utc: DateTime<Utc>,
    from: &OffsetState,
    to: &OffsetState,
) {
    let kind = if to.dst { "DAYLIGHT" } else { "STANDARD" };
    let local = onset_utc.naive_utc() + Duration::seconds(i64::from(from.utc));
    out.line(&format!("BEGIN:{kind}"));
    out.line(&format!("DTSTART:{}", fmt_local(local)));
    out.line(&format!("TZOFFSETFROM:{}", fmt_offset(from.utc)));
    out.line(&format!("TZOFFSETTO:{}", fmt_offset(to.utc)));
    if let Some(n) = &to.name {
        out.text("TZNAME", n);
    }
    out.line(&format!("END:{kind}"));
}

/// A VTIMEZONE for `tz` covering `from..=to` (widened to whole years, plus one each side).
fn write_vtimezone(out: &mut Lines, tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) {
    let year_start = |y: i32| {
        Utc.with_ymd_and_hms(y.clamp(1, 9999), 1, 1, 0, 0, 0)
            .single()
            .unwrap_or(from)
    };
    let start = year_start(from.year() - 1);
    let end = if to.year() >= 9998 {
        to
    } else {
        year_start(to.year() + 2)
    };
    out.line("BEGIN:VTIMEZONE");
    out.line(&format!("TZID:{}", tz.name()));
    let mut cur = state(tz, start);
    write_observance(out, start, &cur, &cur);
    let step = Duration::hours(6);
    let mut t = start;
    while t < end {
        let next = t + step;
        let s = state(tz, next);
        if s != cur {
            // Bisect to the first second with the new state.
            let (mut lo, mut hi) = (t, next);
            while hi - lo > Duration::seconds(1) {
                let mid = lo + (hi - lo) / 2;
                let mid = mid.trunc_subsecs(0);
                if state(tz, mid) == cur {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let new = state(tz, hi);
            write_observance(out, hi, &cur, &new);
            cur = new;
            // Continue from the transition so that a second one in the same step is found.
            t = hi;
            continue;
        }
        t = next;
    }
    out.line("END:VTIMEZONE");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Attendee, Note};
    use ::ical::parser::ical::component::{IcalCalendar, IcalTimeZone};
    use ::ical::property::Property;
    use crmkit_core::{Error, UserId};
    use proptest::prelude::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn activity(subject: &str, details: ActivityDetails) -> Activity {
        Activity {
            id: ActivityId::new(),
            related: vec![],
            subject: subject.to_owned(),
            owner: UserId::new(),
            team: None,
            details,
            created_at: t("2025-01-02T03:04:05Z"),
            updated_at: t("2025-01-03T03:04:05Z"),
            deleted_at: None,
            version: 1,
        }
    }

    fn task(due: Option<Due>) -> Task {
        Task {
            description: None,
            due,
            priority: Priority::Normal,
            status: TaskStatus::Open,
            recurrence: None,
            completed_at: None,
        }
    }

    fn meeting(start: &str, end: &str, tz: &str) -> Meeting {
        Meeting {
            start: t(start),
            end: t(end),
            time_zone: tz.to_owned(),
            location: None,
            link: None,
            attendees: vec![Attendee::User { id: UserId::new() }],
            outcome_notes: None,
        }
    }

    fn reminder(a: &Activity, at: &str) -> Reminder {
        Reminder {
            id: crmkit_core::ReminderId::new(),
            activity: a.id,
            user: a.owner,
            remind_at: t(at),
            delivered_at: None,
        }
    }

    fn now() -> DateTime<Utc> {
        t("2025-06-01T12:00:00Z")
    }

    /// Checks the wire format, then parses with the `ical` crate (exactly one calendar).
    fn parse(s: &str) -> IcalCalendar {
        assert!(s.ends_with("\r\n"));
        for line in s.split_terminator("\r\n") {
            assert!(
                !line.contains('\n') && !line.contains('\r'),
                "bare line break: {line:?}"
            );
            assert!(line.len() <= 75, "line over 75 octets: {line:?}");
        }
        let mut parser = ::ical::IcalParser::new(s.as_bytes());
        let cal = parser.next().expect("one calendar").expect("parses");
        assert!(parser.next().is_none());
        cal
    }

    fn prop<'a>(ps: &'a [Property], name: &str) -> &'a Property {
        ps.iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no {name} in {ps:?}"))
    }

    fn has(ps: &[Property], name: &str) -> bool {
        ps.iter().any(|p| p.name == name)
    }

    fn value<'a>(ps: &'a [Property], name: &str) -> &'a str {
        prop(ps, name).value.as_deref().unwrap_or("")
    }

    fn param<'a>(p: &'a Property, name: &str) -> Option<&'a str> {
        p.params
            .as_ref()?
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v[0].as_str())
    }

    /// RFC 5545 TEXT unescaping.
    fn unescape(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') | Some('N') => out.push('\n'),
                    Some(o) => out.push(o),
                    None => panic!("dangling backslash in {s:?}"),
                }
            } else {
                assert!(c != ';' && c != ',', "unescaped {c:?} in {s:?}");
                out.push(c);
            }
        }
        out
    }

    fn text(ps: &[Property], name: &str) -> String {
        unescape(value(ps, name))
    }

    fn parse_local(v: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(v, "%Y%m%dT%H%M%S").unwrap()
    }

    fn offset(v: &str) -> i64 {
        let sign = if v.starts_with('-') { -1 } else { 1 };
        let d = &v[1..];
        let h: i64 = d[0..2].parse().unwrap();
        let m: i64 = d[2..4].parse().unwrap();
        let s: i64 = if d.len() > 4 {
            d[4..6].parse().unwrap()
        } else {
            0
        };
        sign * (h * 3600 + m * 60 + s)
    }

    /// Resolves a date-time property to UTC using only the parsed output: `...Z`, or a
    /// local time with TZID resolved through the calendar's own VTIMEZONE.
    fn instant(cal: &IcalCalendar, p: &Property) -> DateTime<Utc> {
        let v = p.value.as_deref().unwrap();
        if let Some(utc) = v.strip_suffix('Z') {
            assert!(param(p, "TZID").is_none());
            return parse_local(utc).and_utc();
        }
        let tzid = param(p, "TZID").expect("a local time has a TZID");
        let zone: &IcalTimeZone = cal
            .timezones
            .iter()
            .find(|z| value(&z.properties, "TZID") == tzid)
            .unwrap_or_else(|| panic!("no VTIMEZONE {tzid}"));
        // (onset in UTC, offset after)
        let mut obs: Vec<(NaiveDateTime, i64)> = zone
            .transitions
            .iter()
            .map(|o| {
                let onset = parse_local(value(&o.properties, "DTSTART"));
                let from = offset(value(&o.properties, "TZOFFSETFROM"));
                let to = offset(value(&o.properties, "TZOFFSETTO"));
                (onset - Duration::seconds(from), to)
            })
            .collect();
        obs.sort();
        let local = parse_local(v);
        let in_force = |u: NaiveDateTime| obs.iter().rev().find(|(on, _)| *on <= u).map(|o| o.1);
        // The earliest candidate whose observance is in force (RFC 5545: first occurrence).
        let mut candidates: Vec<NaiveDateTime> = obs
            .iter()
            .map(|(_, off)| local - Duration::seconds(*off))
            .filter(|u| in_force(*u) == Some((local - *u).num_seconds()))
            .collect();
        candidates.sort();
        candidates.first().expect("local time resolves").and_utc()
    }

    #[test]
    fn calendar_header_and_skipped_kinds() {
        let note = activity(
            "note",
            ActivityDetails::Note(Note {
                body: "b".into(),
                pinned: false,
                author: UserId::new(),
            }),
        );
        let mut deleted = activity("gone", ActivityDetails::Task(task(None)));
        deleted.deleted_at = Some(now());
        let kept = activity("kept", ActivityDetails::Task(task(None)));
        let s = to_icalendar(
            "Ann, work; 2025",
            &[note, deleted, kept.clone()],
            &[],
            now(),
        )
        .unwrap();
        let cal = parse(&s);
        assert_eq!(value(&cal.properties, "VERSION"), "2.0");
        assert_eq!(value(&cal.properties, "PRODID"), PRODID);
        assert_eq!(value(&cal.properties, "CALSCALE"), "GREGORIAN");
        assert_eq!(text(&cal.properties, "X-WR-CALNAME"), "Ann, work; 2025");
        assert!(cal.events.is_empty());
        assert_eq!(cal.todos.len(), 1);
        assert!(cal.timezones.is_empty());
        let todo = &cal.todos[0].properties;
        assert_eq!(value(todo, "UID"), format!("{}@crmkit", kept.id));
        assert_eq!(value(todo, "DTSTAMP"), "20250601T120000Z");
        assert_eq!(value(todo, "CREATED"), "20250102T030405Z");
        assert_eq!(text(todo, "SUMMARY"), "kept");
        assert_eq!(value(todo, "STATUS"), "NEEDS-ACTION");
        assert_eq!(value(todo, "PRIORITY"), "5");
        assert!(!has(todo, "DUE") && !has(todo, "DTSTART"));
        assert!(s.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"));
        assert!(s.ends_with("END:VTODO\r\nEND:VCALENDAR\r\n"));
    }

    #[test]
    fn text_escaping_and_folding_round_trip() {
        let long = "Ä long subject with emoji 🎉🎉🎉 that certainly goes past the seventy-five octet limit, twice over: ".repeat(3);
        let subjects = [
            "Call Bob, then Alice; bring \\ backslash".to_owned(),
            "line one\nline two\r\nline three".to_owned(),
            "🎉".repeat(60),
            long.trim_end().to_owned(),
            format!("{}é", "x".repeat(73)),
        ];
        let acts: Vec<Activity> = subjects
            .iter()
            .map(|s| {
                let mut tk = task(None);
                tk.description = Some(format!("{s}\n-- {s}"));
                activity(s, ActivityDetails::Task(tk))
            })
            .collect();
        let s = to_icalendar("c", &acts, &[], now()).unwrap();
        assert!(s.contains("SUMMARY:Call Bob\\, then Alice\\; bring \\\\ backslash\r\n"));
        assert!(s.contains("SUMMARY:line one\\nline two\\nline three\r\n"));
        let cal = parse(&s);
        assert_eq!(cal.todos.len(), subjects.len());
        for (todo, subject) in cal.todos.iter().zip(&subjects) {
            let want = subject.replace("\r\n", "\n");
            assert_eq!(text(&todo.properties, "SUMMARY"), want);
            assert_eq!(
                text(&todo.properties, "DESCRIPTION"),
                format!("{want}\n-- {want}")
            );
        }
        // Folding happened, and never inside a character (the output is a String).
        assert!(s.contains("\r\n "));
    }

    #[test]
    fn folding_is_at_75_octets_and_char_boundaries() {
        let mut out = Lines::default();
        let line = format!("SUMMARY:{}", "é".repeat(100));
        out.line(&line);
        let parts: Vec<&str> = out.0.split_terminator("\r\n").collect();
        assert!(parts.len() > 2);
        assert!(parts.iter().all(|p| p.len() <= 75));
        assert!(parts[1..].iter().all(|p| p.starts_with(' ')));
        let unfolded: String = out.0.replace("\r\n ", "");
        assert_eq!(unfolded, format!("{line}\r\n"));
        let mut exact = Lines::default();
        exact.line(&"a".repeat(75));
        assert_eq!(exact.0, format!("{}\r\n", "a".repeat(75)));
        let mut over = Lines::default();
        over.line(&"a".repeat(76));
        assert_eq!(over.0, format!("{}\r\n a\r\n", "a".repeat(75)));
    }

    #[test]
    fn due_date_and_date_time_priority_status_completed() {
        let mut a = task(Some(Due::Date {
            date: NaiveDate::from_ymd_opt(2025, 7, 4).unwrap(),
        }));
        a.priority = Priority::Urgent;
        a.status = TaskStatus::Done;
        a.completed_at = Some(t("2025-07-03T10:11:12.345Z"));
        let mut b = task(Some(Due::At {
            at: t("2025-07-04T15:30:00Z"),
            time_zone: "Europe/Berlin".into(),
        }));
        b.priority = Priority::Low;
        b.status = TaskStatus::InProgress;
        let mut c = task(None);
        c.priority = Priority::High;
        c.status = TaskStatus::Cancelled;
        let acts = [
            activity("a", ActivityDetails::Task(a)),
            activity("b", ActivityDetails::Task(b)),
            activity("c", ActivityDetails::Task(c)),
        ];
        let s = to_icalendar("c", &acts, &[], now()).unwrap();
        assert!(s.contains("DUE;VALUE=DATE:20250704\r\n"));
        assert!(s.contains("DUE;TZID=Europe/Berlin:20250704T173000\r\n"));
        let cal = parse(&s);
        let [ta, tb, tc] = &cal.todos[..] else {
            panic!()
        };
        let due = prop(&ta.properties, "DUE");
        assert_eq!(param(due, "VALUE"), Some("DATE"));
        assert_eq!(due.value.as_deref(), Some("20250704"));
        assert_eq!(value(&ta.properties, "PRIORITY"), "1");
        assert_eq!(value(&ta.properties, "STATUS"), "COMPLETED");
        assert_eq!(value(&ta.properties, "COMPLETED"), "20250703T101112Z");
        let due = prop(&tb.properties, "DUE");
        assert_eq!(param(due, "TZID"), Some("Europe/Berlin"));
        assert_eq!(instant(&cal, due), t("2025-07-04T15:30:00Z"));
        assert_eq!(value(&tb.properties, "PRIORITY"), "9");
        assert_eq!(value(&tb.properties, "STATUS"), "IN-PROCESS");
        assert_eq!(value(&tc.properties, "PRIORITY"), "2");
        assert_eq!(value(&tc.properties, "STATUS"), "CANCELLED");
        assert_eq!(cal.timezones.len(), 1);
    }

    #[test]
    fn recurrence_rules() {
        let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let rec = |frequency, interval, end, occurrence| Recurrence {
            frequency,
            interval,
            end,
            occurrence,
        };
        let cases = [
            (
                rec(Frequency::Daily, 1, RecurrenceEnd::Count { count: 5 }, 1),
                "FREQ=DAILY;INTERVAL=1;COUNT=5",
            ),
            (
                rec(
                    Frequency::Weekly {
                        weekdays: vec![Weekday::Fri, Weekday::Mon, Weekday::Fri],
                    },
                    2,
                    RecurrenceEnd::Count { count: 10 },
                    4,
                ),
                "FREQ=WEEKLY;BYDAY=MO,FR;INTERVAL=2;COUNT=7",
            ),
            (
                rec(
                    Frequency::Monthly { day: 15 },
                    3,
                    RecurrenceEnd::Until {
                        date: date(2026, 12, 31),
                    },
                    1,
                ),
                "FREQ=MONTHLY;BYMONTHDAY=15;INTERVAL=3;UNTIL=20261231",
            ),
            (
                rec(
                    Frequency::Monthly { day: 31 },
                    1,
                    RecurrenceEnd::Count { count: 12 },
                    1,
                ),
                "FREQ=MONTHLY;BYMONTHDAY=28,29,30,31;BYSETPOS=-1;INTERVAL=1;COUNT=12",
            ),
        ];
        let acts: Vec<Activity> = cases
            .iter()
            .map(|(r, _)| {
                let mut tk = task(Some(Due::Date {
                    date: date(2025, 1, 31),
                }));
                tk.recurrence = Some(r.clone());
                activity("r", ActivityDetails::Task(tk))
            })
            .collect();
        let cal = parse(&to_icalendar("c", &acts, &[], now()).unwrap());
        for (todo, (_, want)) in cal.todos.iter().zip(&cases) {
            assert_eq!(value(&todo.properties, "RRULE"), *want);
            let start = prop(&todo.properties, "DTSTART");
            assert_eq!(param(start, "VALUE"), Some("DATE"));
            assert_eq!(start.value, prop(&todo.properties, "DUE").value);
        }

        // A timed task: UNTIL is the end of the local day, in UTC; DTSTART carries the TZID.
        let mut tk = task(Some(Due::At {
            at: t("2025-03-03T08:00:00Z"),
            time_zone: "America/New_York".into(),
        }));
        tk.recurrence = Some(rec(
            Frequency::Weekly {
                weekdays: vec![Weekday::Mon],
            },
            1,
            RecurrenceEnd::Until {
                date: date(2025, 3, 31),
            },
            1,
        ));
        let cal = parse(
            &to_icalendar("c", &[activity("w", ActivityDetails::Task(tk))], &[], now()).unwrap(),
        );
        let todo = &cal.todos[0].properties;
        assert_eq!(
            value(todo, "RRULE"),
            "FREQ=WEEKLY;BYDAY=MO;INTERVAL=1;UNTIL=20250401T035959Z"
        );
        let start = prop(todo, "DTSTART");
        assert_eq!(param(start, "TZID"), Some("America/New_York"));
        assert_eq!(start.value.as_deref(), Some("20250303T030000"));
        assert_eq!(instant(&cal, start), t("2025-03-03T08:00:00Z"));

        // Without a due time the recurrence is not written.
        let mut tk = task(None);
        tk.recurrence = Some(cases[0].0.clone());
        let cal = parse(
            &to_icalendar("c", &[activity("n", ActivityDetails::Task(tk))], &[], now()).unwrap(),
        );
        assert!(!has(&cal.todos[0].properties, "RRULE"));
    }

    #[test]
    fn reminders_become_alarms() {
        let tk = activity(
            "Send, the; quote",
            ActivityDetails::Task(task(Some(Due::Date {
                date: NaiveDate::from_ymd_opt(2025, 7, 4).unwrap(),
            }))),
        );
        let mut m = meeting("2025-07-04T08:00:00Z", "2025-07-04T09:00:00Z", "UTC");
        m.location = Some("Room 1, 2nd floor".into());
        m.link = Some("https://meet.example/a b?x=1,2;3".into());
        m.outcome_notes = Some("went well\nnext: demo".into());
        let mt = activity("", ActivityDetails::Meeting(m));
        let other = ActivityId::new();
        let mut stray = reminder(&tk, "2025-07-01T00:00:00Z");
        stray.activity = other;
        let reminders = [
            reminder(&tk, "2025-07-03T09:00:00.5Z"),
            reminder(&mt, "2025-07-04T07:45:00Z"),
            reminder(&tk, "2025-07-04T06:00:00Z"),
            stray,
        ];
        let s = to_icalendar("c", &[tk, mt], &reminders, now()).unwrap();
        assert!(s.contains("TRIGGER;VALUE=DATE-TIME:20250703T090000Z\r\n"));
        let cal = parse(&s);
        let alarms = &cal.todos[0].alarms;
        assert_eq!(alarms.len(), 2);
        for (al, at) in alarms
            .iter()
            .zip(["2025-07-03T09:00:00Z", "2025-07-04T06:00:00Z"])
        {
            assert_eq!(value(&al.properties, "ACTION"), "DISPLAY");
            let trig = prop(&al.properties, "TRIGGER");
            assert_eq!(param(trig, "VALUE"), Some("DATE-TIME"));
            assert_eq!(instant(&cal, trig), t(at));
            assert_eq!(text(&al.properties, "DESCRIPTION"), "Send, the; quote");
        }
        let ev = &cal.events[0];
        assert_eq!(ev.alarms.len(), 1);
        assert_eq!(text(&ev.alarms[0].properties, "DESCRIPTION"), "Reminder");
        assert_eq!(text(&ev.properties, "LOCATION"), "Room 1, 2nd floor");
        assert_eq!(text(&ev.properties, "DESCRIPTION"), "went well\nnext: demo");
        assert_eq!(
            value(&ev.properties, "URL"),
            "https://meet.example/a%20b?x=1,2;3"
        );
    }

    #[test]
    fn meetings_across_dst_changes() {
        let cases = [
            // Berlin springs forward at 2025-03-30T01:00Z (02:00 CET -> 03:00 CEST).
            (
                "Europe/Berlin",
                "2025-03-29T09:00:00Z",
                "2025-03-29T10:00:00Z",
                "20250329T100000",
            ),
            (
                "Europe/Berlin",
                "2025-03-30T00:30:00Z",
                "2025-03-30T01:30:00Z",
                "20250330T013000",
            ),
            (
                "Europe/Berlin",
                "2025-03-31T09:00:00Z",
                "2025-03-31T10:00:00Z",
                "20250331T110000",
            ),
            // Berlin falls back at 2025-10-26T01:00Z.
            (
                "Europe/Berlin",
                "2025-10-26T00:30:00Z",
                "2025-10-26T02:00:00Z",
                "20251026T023000",
            ),
            // New York falls back at 2025-11-02T06:00Z (02:00 EDT -> 01:00 EST).
            (
                "America/New_York",
                "2025-11-02T05:30:00Z",
                "2025-11-02T06:30:00Z",
                "20251102T013000",
            ),
            (
                "America/New_York",
                "2025-03-09T06:30:00Z",
                "2025-03-09T07:30:00Z",
                "20250309T013000",
            ),
            (
                "America/New_York",
                "2025-03-09T07:30:00Z",
                "2025-03-09T08:30:00Z",
                "20250309T033000",
            ),
        ];
        let acts: Vec<Activity> = cases
            .iter()
            .map(|(tz, s, e, _)| activity("m", ActivityDetails::Meeting(meeting(s, e, tz))))
            .collect();
        let out = to_icalendar("c", &acts, &[], now()).unwrap();
        let cal = parse(&out);
        assert_eq!(cal.events.len(), cases.len());
        let mut tzids: Vec<&str> = cal
            .timezones
            .iter()
            .map(|z| value(&z.properties, "TZID"))
            .collect();
        tzids.sort();
        assert_eq!(tzids, ["America/New_York", "Europe/Berlin"]);
        for (ev, (tz, s, e, local)) in cal.events.iter().zip(&cases) {
            let start = prop(&ev.properties, "DTSTART");
            assert_eq!(param(start, "TZID"), Some(*tz));
            assert_eq!(start.value.as_deref(), Some(*local));
            assert_eq!(instant(&cal, start), t(s));
            assert_eq!(instant(&cal, prop(&ev.properties, "DTEND")), t(e));
        }
        // 01:30 EST on 2025-11-02 (the second one) cannot be a local time: it is UTC.
        let end = prop(&cal.events[4].properties, "DTEND");
        assert_eq!(end.value.as_deref(), Some("20251102T063000Z"));
        // The generated observances match the tz database.
        let berlin = cal
            .timezones
            .iter()
            .find(|z| value(&z.properties, "TZID") == "Europe/Berlin")
            .unwrap();
        let spring = berlin
            .transitions
            .iter()
            .find(|o| value(&o.properties, "DTSTART") == "20250330T020000")
            .expect("2025 spring transition");
        assert_eq!(value(&spring.properties, "TZOFFSETFROM"), "+0100");
        assert_eq!(value(&spring.properties, "TZOFFSETTO"), "+0200");
        assert_eq!(value(&spring.properties, "TZNAME"), "CEST");
        assert!(out.contains("BEGIN:DAYLIGHT\r\nDTSTART:20250330T020000\r\n"));
        assert!(out.contains("BEGIN:STANDARD\r\nDTSTART:20251026T030000\r\n"));
    }

    #[test]
    fn zone_without_transitions() {
        let m = meeting("2025-07-04T08:00:00Z", "2025-07-04T09:00:00Z", "Asia/Tokyo");
        let cal = parse(
            &to_icalendar(
                "c",
                &[activity("m", ActivityDetails::Meeting(m))],
                &[],
                now(),
            )
            .unwrap(),
        );
        let start = prop(&cal.events[0].properties, "DTSTART");
        assert_eq!(start.value.as_deref(), Some("20250704T170000"));
        assert_eq!(instant(&cal, start), t("2025-07-04T08:00:00Z"));
    }

    #[test]
    fn bad_input_is_a_typed_validation_error() {
        let bad_zone = activity(
            "m",
            ActivityDetails::Meeting(meeting(
                "2025-07-04T08:00:00Z",
                "2025-07-04T09:00:00Z",
                "Mars/Olympus_Mons",
            )),
        );
        let backwards = activity(
            "m",
            ActivityDetails::Meeting(meeting(
                "2025-07-04T09:00:00Z",
                "2025-07-04T08:00:00Z",
                "Europe/Berlin",
            )),
        );
        let mut tk = task(Some(Due::At {
            at: t("2025-07-04T08:00:00Z"),
            time_zone: "europe/nowhere".into(),
        }));
        tk.recurrence = Some(Recurrence {
            frequency: Frequency::Daily,
            interval: 0,
            end: RecurrenceEnd::Count { count: 0 },
            occurrence: 1,
        });
        let bad_task = activity("t", ActivityDetails::Task(tk));
        let err = to_icalendar("c", &[bad_zone, backwards, bad_task], &[], now()).unwrap_err();
        let Error::Validation(v) = &err else {
            panic!("{err:?}")
        };
        assert!(v.has("activities[0].details.time_zone"), "{v}");
        assert!(v.has("activities[1].details.end"), "{v}");
        assert!(v.has("activities[2].details.due.time_zone"), "{v}");

        let mut tk = task(Some(Due::Date {
            date: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
        }));
        tk.recurrence = Some(Recurrence {
            frequency: Frequency::Monthly { day: 32 },
            interval: 0,
            end: RecurrenceEnd::Count { count: 0 },
            occurrence: 1,
        });
        let err =
            to_icalendar("c", &[activity("t", ActivityDetails::Task(tk))], &[], now()).unwrap_err();
        let v = err.validation_errors().expect("validation");
        assert!(v.has("activities[0].details.recurrence.interval"), "{v}");
        assert!(v.has("activities[0].details.recurrence.end.count"), "{v}");
        assert!(
            v.has("activities[0].details.recurrence.frequency.day"),
            "{v}"
        );
    }

    /// What the `ical` parser keeps of a text value: it trims trailing white space of the
    /// unfolded line (escaped newlines are not white space there) and the colons that
    /// start a value (it strips every leading `:` as the name/value delimiter).
    fn parser_trimmed(s: &str) -> &str {
        s.trim_end_matches(|c: char| c.is_whitespace() && c != '\n' && c != '\r')
            .trim_start_matches(':')
    }

    const ZONES: &[&str] = &[
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
        "America/Sao_Paulo",
        "Pacific/Chatham",
    ];

    fn any_text() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[a-zA-Z0-9 ,;:\\\\\\n\"éß€🎉\u{3000}]{0,200}").unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn export_round_trips(
            items in proptest::collection::vec(
                (any_text(), any_text(), 0usize..ZONES.len(), 0i64..2_000_000_000, 0i64..100_000, any::<bool>()),
                1..6,
            )
        ) {
            let base = t("1995-01-01T00:00:00Z");
            let acts: Vec<Activity> = items.iter().map(|(subject, desc, z, secs, len, is_task)| {
                let at = base + Duration::seconds(*secs);
                if *is_task {
                    let mut tk = task(Some(Due::At { at, time_zone: ZONES[*z].into() }));
                    tk.description = Some(desc.clone());
                    activity(subject, ActivityDetails::Task(tk))
                } else {
                    let mut m = meeting("2000-01-01T00:00:00Z", "2000-01-01T00:00:00Z", ZONES[*z]);
                    m.start = at;
                    m.end = at + Duration::seconds(len + 1);
                    m.location = Some(desc.clone());
                    activity(subject, ActivityDetails::Meeting(m))
                }
            }).collect();
            let reminders: Vec<Reminder> = acts.iter().map(|a| reminder(a, "2030-01-01T00:00:00Z")).collect();
            let s = to_icalendar(&items[0].0, &acts, &reminders, now()).unwrap();
            let cal = parse(&s);
            let (mut todos, mut events) = (cal.todos.iter(), cal.events.iter());
            // The parser trims trailing white space of a value (a limitation of `ical`).
            prop_assert_eq!(text(&cal.properties, "X-WR-CALNAME"), parser_trimmed(&items[0].0));
            for ((subject, desc, _, secs, len, is_task), a) in items.iter().zip(&acts) {
                let at = base + Duration::seconds(*secs);
                let uid = format!("{}@crmkit", a.id);
                if *is_task {
                    let c = todos.next().unwrap();
                    prop_assert_eq!(value(&c.properties, "UID"), uid);
                    prop_assert_eq!(text(&c.properties, "SUMMARY"), parser_trimmed(subject));
                    prop_assert_eq!(text(&c.properties, "DESCRIPTION"), parser_trimmed(desc));
                    prop_assert_eq!(instant(&cal, prop(&c.properties, "DUE")), at);
                    prop_assert_eq!(c.alarms.len(), 1);
                } else {
                    let c = events.next().unwrap();
                    prop_assert_eq!(value(&c.properties, "UID"), uid);
                    prop_assert_eq!(text(&c.properties, "SUMMARY"), parser_trimmed(subject));
                    prop_assert_eq!(text(&c.properties, "LOCATION"), parser_trimmed(desc));
                    prop_assert_eq!(instant(&cal, prop(&c.properties, "DTSTART")), at);
                    prop_assert_eq!(
                        instant(&cal, prop(&c.properties, "DTEND")),
                        at + Duration::seconds(len + 1)
                    );
                    prop_assert_eq!(c.alarms.len(), 1);
                }
            }
            prop_assert!(todos.next().is_none() && events.next().is_none());
        }

        #[test]
        fn folding_never_splits_characters(s in "\\PC{0,300}") {
            let mut out = Lines::default();
            out.line(&format!("SUMMARY:{s}"));
            for part in out.0.split_terminator("\r\n") {
                prop_assert!(part.len() <= 75);
            }
            prop_assert_eq!(out.0.replace("\r\n ", ""), format!("SUMMARY:{s}\r\n"));
        }
    }
}
