//! The activities module's record kind, `activity`, for the generic record API (see
//! [`crmkit_core::record`]). Each generic call runs the typed command of [`Activities`],
//! so both paths validate, check access and write the same.
//!
//! ## One kind, with a `type` and its `details`
//!
//! Tasks, calls, meetings, notes and logged emails are one kind, `activity`, because
//! everything else already treats them as one: their ids are [`ActivityId`]s, their
//! events, audit entries, relation rows, follow-up rows (`next_activity`) and timeline
//! entries name the record kind `activity`, and they share the fields a host works with
//! generically (who owns it, what it relates to, its subject, its lifecycle). A host that
//! wants "tasks" creates `{"type": "task", ...}` and lists with the query filter
//! `kind = task`.
//!
//! The kind-specific fields are one `details` object whose keys depend on `type` (see the
//! field's documentation): the kinds' fields do not fit one flat list (a call's `to` is a
//! number, an email's `to` a list of addresses; a meeting needs a start that a task does
//! not have). A patch's `details` is merged key by key into the activity's current
//! details (a key given replaces that key, `null` clears an optional one), and the result
//! is checked and written as [`Activities::update`] checks and writes it, so "mark the
//! task done" is `{"details": {"status": "done"}}`.
//!
//! Errors name the body's fields: a problem inside the details names `details.<key>`
//! (`details.end`, `details.due.time_zone`, `details.attendees[0]`), in a Validation error
//! and in a Duplicate (a logged email's taken Message-ID is `details.message_id`). The
//! typed API names the same problems by the details' own fields (`end`, `message_id`), as
//! its input has them: the generic kind adds the `details.` prefix and nothing else.

use crmkit_core::record::{
    FieldDescription as F, FieldType as T, Json, JsonMap, KindDescription, TypedKind,
};
use crmkit_core::service::to_json;
use crmkit_core::{
    ActivityId, Ctx, Error, Page, Query, RecordKind, RecordRef, Result, Store, TeamId, UserId,
    ValidationErrors,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{Activity, ActivityDetails, ActivityKind as Type};
use crate::rows::ACTIVITY_FIELDS;
use crate::{Activities, ActivityPatch, EVENT_KINDS, NewActivity, RELATED_KINDS};

/// Kinds of modules above activities that an activity relates to, through the generic
/// API, when they are composed.
const UPPER_KINDS: [RecordKind; 1] = [RecordKind::TICKET];

/// The `activity` kind.
#[derive(Debug, Clone, Copy, Default)]
#[doc = ""]
#[doc = include_str!("kinds/activity.md")]
pub struct ActivityRecordKind;

/// An activity as the generic API shows it: its `type` and the activity's own fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivityRecord {
    /// What kind of activity (the `kind` of its details).
    #[serde(rename = "type")]
    pub ty: Type,
    /// The activity.
    #[serde(flatten)]
    pub activity: Activity,
}

impl From<Activity> for ActivityRecord {
    fn from(activity: Activity) -> Self {
        ActivityRecord {
            ty: activity.kind(),
            activity,
        }
    }
}

/// A generic create body of an activity (see the module documentation).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActivityBody {
    /// The activity's type (required; the description says so, so a body without it never
    /// gets here).
    #[serde(rename = "type")]
    pub ty: Option<Type>,
    /// Related records.
    pub related: Vec<RecordRef>,
    /// Subject.
    pub subject: String,
    /// Owner; the actor when absent.
    pub owner: Option<UserId>,
    /// Team.
    pub team: Option<TeamId>,
    /// The kind-specific details, without their `kind` (it is `type`).
    pub details: JsonMap,
}

/// A generic patch body of an activity (see the module documentation).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActivityPatchBody {
    /// New related records.
    pub related: Option<Vec<RecordRef>>,
    /// New subject.
    pub subject: Option<String>,
    /// New owner.
    pub owner: Option<UserId>,
    /// New team (`null` clears it).
    #[serde(deserialize_with = "crmkit_core::record::double_option")]
    pub team: Option<Option<TeamId>>,
    /// Keys of the details to change.
    pub details: Option<JsonMap>,
}

fn type_name(t: Type) -> &'static str {
    match t {
        Type::Task => "task",
        Type::Call => "call",
        Type::Meeting => "meeting",
        Type::Note => "note",
        Type::Email => "email",
    }
}

/// The body fields that are not inside the details.
const TOP: [&str; 6] = ["type", "related", "subject", "owner", "team", "details"];

/// A field of the typed API's error as the body names it: `end` is `details.end`.
fn body_field(field: String) -> String {
    let root = field.split(['.', '[']).next().unwrap_or_default();
    if TOP.contains(&root) {
        field
    } else {
        format!("details.{field}")
    }
}

/// Names the details' keys as the body has them, in a Validation error's fields and in a
/// Duplicate's field (a logged email's taken `message_id` is `details.message_id`).
fn body_fields(e: Error) -> Error {
    match e {
        Error::Validation(mut v) => {
            for f in &mut v.errors {
                f.field = body_field(std::mem::take(&mut f.field));
            }
            Error::Validation(v)
        }
        Error::Duplicate {
            kind,
            field,
            existing,
        } => Error::Duplicate {
            kind,
            field: body_field(field),
            existing,
        },
        other => other,
    }
}

fn clean(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// The details from a JSON object (with `kind`); a key serde refuses is a Validation
/// error naming `details.<key>`.
fn details_from(map: JsonMap) -> Result<ActivityDetails> {
    let err = match serde_json::from_value::<ActivityDetails>(Json::Object(map.clone())) {
        Ok(d) => return Ok(d),
        Err(e) => e,
    };
    let reason = clean(&err);
    let named = |prefix: &str| {
        reason
            .strip_prefix(prefix)
            .and_then(|r| r.split('`').next())
            .map(str::to_owned)
    };
    // Serde names a missing or unknown key; otherwise the key whose removal makes the
    // error go (or turn into its own absence) is the bad one.
    let key = named("missing field `")
        .or_else(|| named("unknown field `"))
        .or_else(|| {
            map.keys().find(|k| *k != "kind").and_then(|k| {
                let mut less = map.clone();
                less.remove(k.as_str());
                match serde_json::from_value::<ActivityDetails>(Json::Object(less)) {
                    Ok(_) => Some(k.clone()),
                    Err(e) if clean(&e) == format!("missing field `{k}`") => Some(k.clone()),
                    Err(_) => None,
                }
            })
        });
    let mut errs = ValidationErrors::new();
    match key {
        Some(k) => errs.push(format!("details.{k}"), reason),
        None => errs.push("details", reason),
    }
    Err(errs.into())
}

/// The activities API the generic kind runs on: it relates to the kinds the kind
/// describes (tickets too, when the tickets module is composed).
fn api(store: &Store) -> Result<Activities> {
    let mut a = Activities::new(store)?;
    for k in UPPER_KINDS {
        if store.modules().registry().get(k.as_str()).is_some() {
            a = a.with_declared(k);
        }
    }
    Ok(a)
}

impl ActivityRecordKind {
    fn description(related: Vec<RecordKind>) -> KindDescription {
        let types = ["task", "call", "meeting", "note", "email"];
        KindDescription::new("activity", "Activity", "Activities", "activities")
            .doc(
                "A task, call, meeting, note or logged email (`type`), related to records. \
                 The kind-specific fields are in `details`; a patch's `details` is merged key \
                 by key into the current details.",
            )
            .events(EVENT_KINDS)
            .id_field()
            .field(
                F::new("type", T::choice(&types))
                    .required()
                    .create_only()
                    .doc("What kind of activity; it never changes. Filter on it as `kind`."),
            )
            .field(
                F::new("related", T::list(T::AnyReference(related))).doc(&format!(
                    "The records it relates to (at most {}): each must be a live \
                         record the actor may see (`related[i]` otherwise, the same error \
                         for a missing, deleted, another tenant's or hidden record). A \
                         call is also related to the contacts, organizations and leads the \
                         actor sees whose phone is its external number.",
                    crate::MAX_RELATED
                )),
            )
            .field(
                F::new("subject", T::text(crate::MAX_SUBJECT as u32))
                    .personal()
                    .doc("Subject line (a note's title, possibly empty)."),
            )
            .owned()
            .field(F::new("details", T::Object).personal().doc(
                "The kind-specific fields, by `type` (`kind` repeats the type):\n\
                     - task: `description` (text or null), `due` (null, \
                     `{\"type\": \"date\", \"date\": \"YYYY-MM-DD\"}` all-day in the \
                     owner's time zone, or `{\"type\": \"at\", \"at\": RFC 3339, \
                     \"time_zone\": IANA}`), `priority` (low, normal (default), high, \
                     urgent), `status` (open (default), in_progress, done, cancelled), \
                     `recurrence` (null or `{\"frequency\": {\"type\": \"daily\"} | \
                     {\"type\": \"weekly\", \"weekdays\": [\"Mon\", ..]} | {\"type\": \
                     \"monthly\", \"day\": 1-31}, \"interval\": n >= 1, \"end\": {\"type\": \
                     \"count\", \"count\": n} | {\"type\": \"until\", \"date\": ..}, \
                     \"occurrence\": n}`; needs a due), `completed_at` (set when done).\n\
                     - call: `direction` (inbound, outbound), `from`, `to` (numbers, 1 to \
                     64 characters, E.164 when they parse), `started_at`, `duration_secs` \
                     (default 0), `outcome` (connected, no_answer, voicemail, busy, \
                     wrong_number), `agent` (a user of the tenant, or null), \
                     `recording_ref`, `notes`.\n\
                     - meeting: `start`, `end` (after the start), `time_zone` (IANA), \
                     `location`, `link`, `attendees` (`{\"type\": \"contact\" | \"user\", \
                     \"id\"}`: contacts the actor sees, users of the tenant), \
                     `outcome_notes`.\n\
                     - note: `body` (required), `pinned` (default false), `author` (a user; \
                     the actor when absent; a Rep writes as themselves only).\n\
                     - email: `direction`, `from`, `to` and `cc` (lists of addresses), \
                     `excerpt`, `message_id` (required, logged once per tenant, never \
                     changes).",
            ))
            .system_fields()
            .queryable(&ACTIVITY_FIELDS)
            .filter_as("type", "kind")
    }
}

impl TypedKind for ActivityRecordKind {
    type Record = ActivityRecord;
    type New = ActivityBody;
    type Patch = ActivityPatchBody;

    /// The description with every kind an activity can relate to; the registry keeps
    /// [`TypedKind::describe_in`] the composition.
    fn describe(&self) -> KindDescription {
        Self::description(RELATED_KINDS.iter().chain(&UPPER_KINDS).cloned().collect())
    }

    /// `related` names the composed ones of contact, organization, lead, deal and
    /// ticket.
    fn describe_in(&self, composed: &[RecordKind]) -> KindDescription {
        Self::description(
            RELATED_KINDS
                .iter()
                .chain(&UPPER_KINDS)
                .filter(|k| composed.contains(k))
                .cloned()
                .collect(),
        )
    }

    async fn get(&self, store: &Store, ctx: &Ctx, id: Uuid) -> Result<ActivityRecord> {
        Ok(api(store)?
            .get(ctx, ActivityId::from_uuid(id))
            .await?
            .into())
    }

    async fn list(&self, store: &Store, ctx: &Ctx, q: &Query) -> Result<Page<ActivityRecord>> {
        let p = api(store)?.list(ctx, q).await?;
        Ok(Page {
            items: p.items.into_iter().map(Into::into).collect(),
            next_cursor: p.next_cursor,
            total: p.total,
        })
    }

    async fn create(
        &self,
        store: &Store,
        ctx: &Ctx,
        input: ActivityBody,
    ) -> Result<ActivityRecord> {
        let ty = input
            .ty
            .ok_or_else(|| Error::validation("type", "is required"))?;
        let mut details = input.details;
        match details.get("kind") {
            Some(k) if k.as_str() != Some(type_name(ty)) => {
                return Err(Error::validation("details.kind", "must be the type"));
            }
            _ => {}
        }
        details.insert("kind".into(), Json::from(type_name(ty)));
        if ty == Type::Note && !details.contains_key("author") {
            details.insert("author".into(), to_json(&ctx.actor().user));
        }
        let new = NewActivity {
            related: input.related,
            subject: input.subject,
            owner: input.owner,
            team: input.team,
            details: details_from(details)?,
        };
        let a = api(store)?.create(ctx, new).await.map_err(body_fields)?;
        Ok(a.into())
    }

    async fn patch(
        &self,
        store: &Store,
        ctx: &Ctx,
        id: Uuid,
        expected_version: u64,
        p: ActivityPatchBody,
    ) -> Result<ActivityRecord> {
        let acts = api(store)?;
        let id = ActivityId::from_uuid(id);
        let details = match p.details {
            None => None,
            Some(changes) => {
                let current = acts.get(ctx, id).await?;
                let Json::Object(mut map) = to_json(&current.details) else {
                    return Err(Error::storage("activity details are not an object"));
                };
                for (k, v) in changes {
                    if k == "kind" && map.get("kind") != Some(&v) {
                        return Err(Error::validation(
                            "details.kind",
                            "an activity keeps its type",
                        ));
                    }
                    map.insert(k, v);
                }
                Some(details_from(map)?)
            }
        };
        let patch = ActivityPatch {
            related: p.related,
            subject: p.subject,
            owner: p.owner,
            team: p.team,
            details,
        };
        let a = acts
            .update(ctx, id, expected_version, patch)
            .await
            .map_err(body_fields)?;
        Ok(a.into())
    }

    async fn delete(&self, store: &Store, ctx: &Ctx, id: Uuid, v: u64) -> Result<ActivityRecord> {
        Ok(api(store)?
            .delete(ctx, ActivityId::from_uuid(id), v)
            .await?
            .into())
    }

    async fn restore(&self, store: &Store, ctx: &Ctx, id: Uuid, v: u64) -> Result<ActivityRecord> {
        Ok(api(store)?
            .restore(ctx, ActivityId::from_uuid(id), v)
            .await?
            .into())
    }

    crmkit_core::forward_typed_kind! {
        api: |store| api(store)?, id: ActivityId;
        audit,
    }
}

#[cfg(test)]
mod doc_tables {
    use super::*;

    fn check(doc: &str, d: &KindDescription) {
        if let Err(e) = crmkit_core::record::check_field_table(doc, d) {
            panic!("{e}");
        }
    }

    #[test]
    fn the_docs_list_every_field() {
        check(
            include_str!("kinds/activity.md"),
            &ActivityRecordKind.describe(),
        );
    }
}
