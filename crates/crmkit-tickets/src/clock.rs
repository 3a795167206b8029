//! A pausable SLA clock.
//!
//! An [`SlaClock`] is a plain value, stored on a ticket per SLA target (first response,
//! resolution, ...). It counts business minutes of a [`BusinessCalendar`] while it runs and
//! stops counting while it is paused (the ticket is pending on the customer, or on hold).
//!
//! The clock only records what happened (the instants of starts, pauses and resumes, and
//! the working time consumed by closed running segments); every question about it is
//! answered against a calendar and, where it matters, the current instant. Working time is
//! counted exactly (to the second, see [the calendar's decisions](crate::calendar)) and
//! reported in whole minutes.
//!
//! The clock is **breached after its due instant**: at exactly [`SlaClock::due_at`] the
//! target is reached but not exceeded ([`SlaClock::is_breached`] is false, remaining is 0);
//! any later instant is a breach, even if it is outside working hours (a target due at
//! 17:00 is breached at 18:00).

use chrono::{DateTime, TimeDelta, Utc};
use crmkit_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::calendar::BusinessCalendar;

/// Whether a clock is running or paused, and since when. Serialized as
/// `{"status": "running", "since": "2026-06-08T07:00:00Z"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ClockState {
    /// Counting working time since `since` (the start of the current running segment).
    Running {
        /// When the current running segment started.
        since: DateTime<Utc>,
    },
    /// Not counting since `since`.
    Paused {
        /// When the clock was paused.
        since: DateTime<Utc>,
    },
}

/// An SLA clock: a target in business minutes, counted while running.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaClock {
    started_at: DateTime<Utc>,
    target_minutes: i64,
    /// Working time consumed by closed running segments, in seconds.
    consumed_seconds: i64,
    state: ClockState,
    /// The instant the target was reached inside a closed running segment, if it was.
    reached_at: Option<DateTime<Utc>>,
}

impl SlaClock {
    /// A clock started (running) at `at` with a target of `target_minutes` business minutes.
    ///
    /// Fails with a Validation error on `target_minutes` unless it is positive. Counting
    /// begins at the calendar's first working instant at or after `at`.
    pub fn start(at: DateTime<Utc>, target_minutes: i64) -> Result<Self> {
        if target_minutes <= 0 {
            return Err(Error::validation(
                "target_minutes",
                format!(
                    "target must be a positive number of business minutes, got {target_minutes}"
                ),
            ));
        }
        Ok(SlaClock {
            started_at: at,
            target_minutes,
            consumed_seconds: 0,
            state: ClockState::Running { since: at },
            reached_at: None,
        })
    }

    /// When the clock was started.
    pub fn started_at(&self) -> DateTime<Utc> {
        self.started_at
    }

    /// The target, in business minutes.
    pub fn target_minutes(&self) -> i64 {
        self.target_minutes
    }

    /// Working time consumed by the running segments closed so far (by [`pause`](Self::pause)),
    /// in seconds. Does not include the current running segment.
    pub fn consumed_seconds(&self) -> i64 {
        self.consumed_seconds
    }

    /// Running or paused, and since when.
    pub fn state(&self) -> ClockState {
        self.state
    }

    /// Whether the clock is paused.
    pub fn is_paused(&self) -> bool {
        matches!(self.state, ClockState::Paused { .. })
    }

    fn target_seconds(&self) -> i64 {
        self.target_minutes.saturating_mul(60)
    }

    /// Pauses the clock at `at`, closing the running segment and adding its working time.
    ///
    /// A no-op if the clock is already paused. An `at` before the running segment's start
    /// closes an empty segment.
    pub fn pause(&mut self, cal: &BusinessCalendar, at: DateTime<Utc>) {
        let ClockState::Running { since } = self.state else {
            return;
        };
        let segment = cal.duration_between(since, at).num_seconds();
        let target = self.target_seconds();
        if self.reached_at.is_none() && self.consumed_seconds.saturating_add(segment) >= target {
            let rest = target.saturating_sub(self.consumed_seconds).max(0);
            self.reached_at =
                TimeDelta::try_seconds(rest).and_then(|rest| cal.checked_add_duration(since, rest));
        }
        self.consumed_seconds = self.consumed_seconds.saturating_add(segment);
        self.state = ClockState::Paused { since: at };
    }

    /// Resumes the clock at `at`, starting a new running segment. A no-op if it is running.
    pub fn resume(&mut self, at: DateTime<Utc>) {
        if let ClockState::Paused { .. } = self.state {
            self.state = ClockState::Running { since: at };
        }
    }

    /// Changes the target to `target_minutes` at `at`, keeping the working time consumed
    /// so far (the running segment, if any, is closed at `at` and a new one starts there).
    ///
    /// If the time consumed already reaches the new target, the target counts as reached
    /// at the instant it was reached before, if it was, or else at `at` (a new, shorter
    /// target never becomes due retroactively before the change). Otherwise it is not
    /// reached yet. Fails with a Validation error on `target_minutes` unless it is
    /// positive.
    pub fn retarget(
        &mut self,
        cal: &BusinessCalendar,
        at: DateTime<Utc>,
        target_minutes: i64,
    ) -> Result<()> {
        let fresh = SlaClock::start(at, target_minutes)?;
        let running = !self.is_paused();
        self.pause(cal, at);
        self.target_minutes = fresh.target_minutes;
        self.reached_at = if self.consumed_seconds >= self.target_seconds() {
            Some(self.reached_at.unwrap_or(at))
        } else {
            None
        };
        if running {
            self.resume(at);
        }
        Ok(())
    }

    /// Working time counted while running, up to `now`, in seconds.
    fn elapsed_seconds(&self, cal: &BusinessCalendar, now: DateTime<Utc>) -> i64 {
        let running = match self.state {
            ClockState::Running { since } => cal.duration_between(since, now).num_seconds(),
            ClockState::Paused { .. } => 0,
        };
        self.consumed_seconds.saturating_add(running).max(0)
    }

    /// Whole business minutes counted while running, up to `now` (the current segment is
    /// counted up to `now`; instants before its start count nothing).
    pub fn elapsed(&self, cal: &BusinessCalendar, now: DateTime<Utc>) -> i64 {
        self.elapsed_seconds(cal, now) / 60
    }

    /// Business minutes left before the target is reached, as of `now`: `target - elapsed`,
    /// never negative.
    pub fn remaining(&self, cal: &BusinessCalendar, now: DateTime<Utc>) -> i64 {
        self.target_minutes
            .saturating_sub(self.elapsed(cal, now))
            .max(0)
    }

    /// The instant the target is reached if the clock keeps running: `None` while paused.
    ///
    /// If the target was already reached in an earlier running segment, that instant (in
    /// the past). `None` too if the instant lies beyond the calendar's search horizon.
    pub fn due_at(&self, cal: &BusinessCalendar) -> Option<DateTime<Utc>> {
        match self.state {
            ClockState::Paused { .. } => None,
            ClockState::Running { since } => self.reached_at.or_else(|| {
                let rest = self.target_seconds().saturating_sub(self.consumed_seconds);
                cal.checked_add_duration(since, TimeDelta::try_seconds(rest)?)
            }),
        }
    }

    /// The instant the target was or will be reached: [`due_at`](Self::due_at) while
    /// running; while paused, the instant it was reached in an earlier segment, if it was.
    pub fn reached_at(&self, cal: &BusinessCalendar) -> Option<DateTime<Utc>> {
        match self.state {
            ClockState::Paused { .. } => self.reached_at,
            ClockState::Running { .. } => self.due_at(cal),
        }
    }

    /// Whether the target was exceeded at `now`: `now` is after the instant the target was
    /// reached. A paused clock that had not reached its target is never breached.
    pub fn is_breached(&self, cal: &BusinessCalendar, now: DateTime<Utc>) -> bool {
        self.reached_at(cal).is_some_and(|reached| now > reached)
    }
}
