//! # crmkit-activities
//!
//! Tasks, calls, meetings, notes and logged emails related to contacts, organizations,
//! leads and deals; reminders; follow-up tracking; the timeline of a record; calendar
//! export.
//!
//! It follows the pattern of crmkit-contacts and crmkit-pipeline: every command validates
//! every field at once (a Validation error naming each bad field, nothing written), checks
//! record-level access (Admin and Manager see every activity; others the ones they or
//! their teams own), and commits one changeset: the activity row, its relation rows, the
//! follow-up rows of its records, the next occurrence of a completed recurring task, audit
//! entries and events. See [`Activities`].
//!
//! Errors name fields as the typed input has them: a problem inside an activity's details
//! names the details' own field (`end`, `due.time_zone`, a taken `message_id`). The
//! generic `activity` kind ([`kinds`]) names the same problems as its body has them, under
//! `details.` (`details.end`, `details.message_id`).

mod followup;
pub mod ical;
pub mod inputs;
pub mod kinds;
pub mod model;
pub mod recur;
pub mod rows;
mod service;

pub use inputs::*;
pub use model::*;
pub use service::{
    Activities, EVENT_KINDS, MAX_AUTO_LINKS, MAX_BATCH, MAX_RELATED, MAX_SUBJECT, MAX_TEXT,
    RELATED_KINDS, RelatedRecords, StagedActivities,
};

use crmkit_core::{Changeset, Migration, Module, Result};

/// The activities module.
#[derive(Debug, Clone, Copy, Default)]
pub struct ActivitiesModule;

impl Module for ActivitiesModule {
    fn name(&self) -> &'static str {
        "activities"
    }

    fn dependencies(&self) -> Vec<&'static str> {
        vec!["contacts", "pipeline"]
    }

    fn migrations(&self) -> Vec<Migration> {
        vec![
            Migration::create_tables(
                1,
                "activities, relations, reminders, follow-up",
                rows::tables(),
            ),
            Migration {
                version: 2,
                description: "follow-up rows for every tracked record: creation time, \
                              quiet-since, active flag and their indexes",
                steps: followup::migration_v2(),
            },
            Migration {
                version: 3,
                description: "a task's completion instant as an indexed column \
                              (activity reports)",
                steps: rows::migration_v3(),
            },
        ]
    }

    /// Adds the follow-up row of every contact, organization, lead and deal the changeset
    /// creates, and keeps its `active` flag in step with the record's lifecycle events, so
    /// that follow-up lists include records that never had an activity.
    fn before_commit(&self, changeset: &mut Changeset) -> Result<()> {
        followup::derive(changeset)
    }

    /// The `activity` kind (see [`kinds`]).
    fn record_kinds(&self) -> Vec<std::sync::Arc<dyn crmkit_core::record::KindHandler>> {
        vec![crmkit_core::record::typed(kinds::ActivityRecordKind)]
    }

    fn event_kinds(&self) -> Vec<&'static str> {
        EVENT_KINDS.to_vec()
    }
}
