//! # crmkit-tickets
//!
//! Tickets for crmkit. This part is the pure business-time core the ticket SLAs are built
//! on:
//!
//! * [`calendar`]: [`BusinessCalendar`](calendar::BusinessCalendar), a time zone with weekly
//!   working hours and dated exceptions (holidays, extra working days), and business-time
//!   arithmetic that is exact across daylight-saving changes;
//! * [`clock`]: [`SlaClock`](clock::SlaClock), a value that counts business minutes towards
//!   a target and pauses while a ticket waits on the customer or is on hold.
//!
//! Both are plain values: no storage, no clock reads; every instant is passed in.
//!
//! ```
//! use chrono::{NaiveDate, TimeZone, Utc};
//! use crmkit_tickets::calendar::{BusinessCalendar, Interval};
//! use crmkit_tickets::clock::SlaClock;
//!
//! let christmas = NaiveDate::from_ymd_opt(2026, 12, 25).unwrap();
//! let cal = BusinessCalendar::builder("Europe/Berlin")
//!     .weekdays([Interval::hm(9, 0, 12, 0), Interval::hm(13, 0, 17, 0)])
//!     .holiday(christmas)
//!     .build()?;
//!
//! // Thursday 2026-12-24, 16:30 in Berlin (CET, UTC+1).
//! let start = Utc.with_ymd_and_hms(2026, 12, 24, 15, 30, 0).unwrap();
//! // 30 minutes on Thursday; Friday is Christmas, then the weekend; 60 minutes on Monday.
//! let due = cal.add_minutes(start, 90);
//! assert_eq!(due, Utc.with_ymd_and_hms(2026, 12, 28, 9, 0, 0).unwrap()); // 10:00 CET
//! assert_eq!(cal.minutes_between(start, due), 90);
//!
//! // An SLA clock with the same target, paused for nothing: due at the same instant.
//! let clock = SlaClock::start(start, 90)?;
//! assert_eq!(clock.due_at(&cal), Some(due));
//! # Ok::<(), crmkit_core::Error>(())
//! ```

pub mod calendar;
pub mod clock;
