//! # crmkit-activities
//!
//! Tasks, calls, meetings, notes and logged emails related to contacts, organizations,
//! leads and deals; reminders; follow-up tracking; the timeline of a record; calendar
//! export.

pub mod ical;
pub mod model;

pub use model::*;
