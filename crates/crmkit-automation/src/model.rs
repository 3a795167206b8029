//! The rule model: triggers, conditions and actions as plain data, serialised as
//! versioned JSON (`{"format": 1, ...}`).
//!
//! Every trigger and action kind of the automation module is modelled here, including
//! those whose engine part is still to come, so that the JSON a host stores now keeps
//! its meaning.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use crmkit_core::{
    CalendarId, CampaignId, Error, Filter, Result, RuleId, SequenceId, StageId, TeamId, UserId,
    ValidationErrors,
};
use serde::{Deserialize, Deserializer, Serialize};

/// The rule format this crmkit reads and writes.
pub const FORMAT: u32 = 1;
/// Longest rule name.
pub const MAX_NAME: usize = 200;
/// Most actions in one rule.
pub const MAX_ACTIONS: usize = 50;

/// Deserialises `Option<Option<T>>` so that an absent key is `None` and `null` is
/// `Some(None)`.
fn double_option<'de, T, D>(de: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// What starts a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// A record of `record_kind` was created (by any path: API, import, generic API).
    RecordCreated {
        /// The record kind (built-in or a third-party module's), by name.
        record_kind: String,
    },
    /// A record of `record_kind` was changed. Without `field`, any change; with `field`,
    /// a change of that field; with `from` and/or `to` as well, a change of that field
    /// from that value and/or to that value (`null` meaning "no value").
    RecordUpdated {
        /// The record kind.
        record_kind: String,
        /// The field that must have changed (the record's JSON field name; custom fields
        /// as `custom.<key>`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<String>,
        /// The value the field must have had before.
        #[serde(
            default,
            deserialize_with = "double_option",
            skip_serializing_if = "Option::is_none"
        )]
        from: Option<Option<serde_json::Value>>,
        /// The value the field must have after.
        #[serde(
            default,
            deserialize_with = "double_option",
            skip_serializing_if = "Option::is_none"
        )]
        to: Option<Option<serde_json::Value>>,
    },
    /// A record of `record_kind` was soft-deleted.
    RecordDeleted {
        /// The record kind.
        record_kind: String,
    },
    /// A record of `record_kind` was restored.
    RecordRestored {
        /// The record kind.
        record_kind: String,
    },
    /// A domain event of a composed module (`deal.moved`, `ticket.sla_breached`, ...).
    /// The record kind is the event's prefix when that is a composed kind.
    Event {
        /// The event kind.
        event: String,
    },
    /// A time relative to a date or timestamp field of a record: `offset` before or after
    /// it.
    Relative {
        /// The record kind.
        record_kind: String,
        /// The date or timestamp field (`expected_close`, `created_at`, `custom.<key>`).
        field: String,
        /// How far before or after.
        offset: Offset,
        /// Before or after the field's instant.
        direction: Direction,
    },
    /// A schedule: every day, week or month at a local time in a time zone, over the
    /// records of `record_kind` that `filter` selects.
    Schedule {
        /// The record kind the schedule runs over.
        record_kind: String,
        /// How often.
        every: Recurrence,
        /// Local time of day, `HH:MM` (24 hours).
        at: String,
        /// IANA time zone (`Europe/Berlin`).
        time_zone: String,
        /// Which records: a filter over the kind's *query* names (as a list query
        /// takes them), since the schedule selects records with a query.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<Filter>,
    },
}

/// The trigger kinds' names, as the `kind` tag of a [`Trigger`] reads.
pub const TRIGGER_KINDS: &[&str] = &[
    "record_created",
    "record_updated",
    "record_deleted",
    "record_restored",
    "event",
    "relative",
    "schedule",
];

impl Trigger {
    /// The `kind` tag.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Trigger::RecordCreated { .. } => "record_created",
            Trigger::RecordUpdated { .. } => "record_updated",
            Trigger::RecordDeleted { .. } => "record_deleted",
            Trigger::RecordRestored { .. } => "record_restored",
            Trigger::Event { .. } => "event",
            Trigger::Relative { .. } => "relative",
            Trigger::Schedule { .. } => "schedule",
        }
    }

    /// The record kind the trigger names (for an event trigger: the event's prefix, which
    /// the validation checks is a composed kind).
    pub fn record_kind(&self) -> Option<&str> {
        match self {
            Trigger::RecordCreated { record_kind }
            | Trigger::RecordUpdated { record_kind, .. }
            | Trigger::RecordDeleted { record_kind }
            | Trigger::RecordRestored { record_kind }
            | Trigger::Relative { record_kind, .. }
            | Trigger::Schedule { record_kind, .. } => Some(record_kind),
            Trigger::Event { event } => event.split_once('.').map(|(k, _)| k),
        }
    }
}

/// A span of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offset {
    /// How many units (1 or more).
    pub amount: u32,
    /// Which units.
    pub unit: TimeUnit,
    /// For business days: the SLA calendar whose working days count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<CalendarId>,
}

/// A unit of an [`Offset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    /// Minutes.
    Minutes,
    /// Hours.
    Hours,
    /// Calendar days.
    Days,
    /// Working days of an SLA calendar (needs [`Offset::calendar`]).
    BusinessDays,
}

/// Before or after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Before the field's instant.
    Before,
    /// After the field's instant.
    After,
}

/// How often a schedule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "period", rename_all = "snake_case", deny_unknown_fields)]
pub enum Recurrence {
    /// Every day.
    Daily,
    /// Every week on a weekday.
    Weekly {
        /// The weekday (`mon` ... `sun`).
        weekday: chrono::Weekday,
    },
    /// Every month on a day (1 to 28, so that every month has it).
    Monthly {
        /// The day of the month.
        day: u32,
    },
}

/// What must hold for a triggered rule to act: a filter over the record's fields (the
/// query AST, with the record's JSON field names and `custom.<key>`), and predicates on
/// what changed. Both must hold; an empty `Conditions` always holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Conditions {
    /// A filter over the record's fields (see [`crate::eval`] for its meaning on a record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// Predicates on the change that triggered the rule (all must hold).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<ChangePredicate>,
}

/// A predicate on what changed: `field` changed (and, when given, from `from` and/or to
/// `to`; `null` means "no value").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePredicate {
    /// The field (JSON field name or `custom.<key>`).
    pub field: String,
    /// Its value before the change.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub from: Option<Option<serde_json::Value>>,
    /// Its value after the change.
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub to: Option<Option<serde_json::Value>>,
}

impl ChangePredicate {
    /// `field` changed.
    pub fn changed(field: impl Into<String>) -> Self {
        ChangePredicate {
            field: field.into(),
            from: None,
            to: None,
        }
    }

    /// And had this value before (`null`: none).
    pub fn from(mut self, v: serde_json::Value) -> Self {
        self.from = Some((!v.is_null()).then_some(v));
        self
    }

    /// And has this value after (`null`: none).
    pub fn to(mut self, v: serde_json::Value) -> Self {
        self.to = Some((!v.is_null()).then_some(v));
        self
    }
}

/// How an owner is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// In turn.
    RoundRobin,
    /// Whoever has the fewest open records of the kind.
    LeastLoaded,
    /// In proportion to each member's weight.
    Weighted,
}

/// A member of an assignment pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolMember {
    /// The user.
    pub user: UserId,
    /// Their weight (for [`Strategy::Weighted`]; 1 by default).
    #[serde(default = "one")]
    pub weight: u32,
    /// The most records they are given per period of the action's [`Capacity`]
    /// (overriding its `per_member`); needs a `capacity` on the action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
}

impl PoolMember {
    /// A member of weight 1 with no capacity of their own.
    pub fn new(user: UserId) -> Self {
        PoolMember {
            user,
            weight: 1,
            capacity: None,
        }
    }

    /// With a weight (for [`Strategy::Weighted`]).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// With their own capacity per period.
    pub fn capacity(mut self, capacity: u32) -> Self {
        self.capacity = Some(capacity);
        self
    }
}

/// A period over which an assignment's capacities count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapacityPeriod {
    /// A local calendar day.
    Day,
    /// An ISO week (Monday to Sunday), local.
    Week,
    /// A local calendar month.
    Month,
}

/// Caps on what each member of an assignment pool is given per period: a member who has
/// reached their cap in the current period is passed over (whatever the strategy); when
/// every member has, the action fails with a Validation error on `capacity` (a failed run
/// a host can list and retry), and the record keeps its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// The period the counts start again at.
    pub period: CapacityPeriod,
    /// The IANA time zone whose days, weeks and months count (`Europe/Berlin`).
    pub time_zone: String,
    /// Every member's cap, unless a member gives their own
    /// ([`PoolMember::capacity`]); absent: only members with their own cap are capped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_member: Option<u32>,
}

fn one() -> u32 {
    1
}

/// A notification channel (the host's `Notifier` sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Email.
    Email,
    /// SMS.
    Sms,
    /// Chat.
    Chat,
}

/// What a rule does, in order. Text fields marked "template" may use `{{field}}`
/// placeholders over the triggering record's fields (`{{custom.<key>}}` too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Set fields of the triggering record through the generic record API (patchable
    /// fields only; a string value of a text field may be a template).
    SetFields {
        /// Field name -> value (JSON, as a generic patch takes it).
        fields: BTreeMap<String, serde_json::Value>,
    },
    /// Add a tag (kinds with a writable `tags` field).
    AddTag {
        /// The tag.
        tag: String,
    },
    /// Remove a tag.
    RemoveTag {
        /// The tag.
        tag: String,
    },
    /// Give the record an owner chosen by a strategy over a team or a list of users.
    AssignOwner {
        /// How.
        strategy: Strategy,
        /// Among the active members of this team...
        #[serde(default, skip_serializing_if = "Option::is_none")]
        team: Option<TeamId>,
        /// ... or among these users.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        users: Vec<PoolMember>,
        /// Caps per member per period.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capacity: Option<Capacity>,
    },
    /// Create an activity related to the record.
    CreateActivity {
        /// `task`, `call`, `meeting`, `note` or `email`.
        activity_type: String,
        /// Subject (template).
        subject: String,
        /// Due this long after the rule runs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due_in: Option<Offset>,
    },
    /// Log a note on the record.
    LogNote {
        /// The note (template).
        body: String,
    },
    /// Create a ticket for the record: a contact's (they are its requester, their
    /// organization its organization) or a ticket's follow-up (the same requester,
    /// requester phone and organization).
    CreateTicket {
        /// Subject (template).
        subject: String,
        /// Priority (a ticket priority name).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priority: Option<String>,
    },
    /// Escalate the triggering ticket.
    EscalateTicket {
        /// Why (template).
        reason: String,
    },
    /// Move the triggering deal to a stage of its pipeline.
    MoveDealToStage {
        /// The stage.
        stage: StageId,
    },
    /// Set the triggering lead's status.
    SetLeadStatus {
        /// A lead status name.
        status: String,
    },
    /// Set the triggering lead's score.
    SetLeadScore {
        /// The score.
        score: i64,
    },
    /// Add the triggering lead or contact to a campaign.
    AddToCampaign {
        /// The campaign.
        campaign: CampaignId,
    },
    /// Notify a user, or a contact (a customer), through the host's notifier.
    Notify {
        /// The channel.
        channel: Channel,
        /// The user to notify. With neither this nor `to_field`, the record's owner.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<UserId>,
        /// Or whom a field of the record names: a reference to a user (`owner`,
        /// `assignee`) or to a contact (a ticket's `requester`, a deal's `contact`), or
        /// `id` when the record is a contact. A contact is notified at their first email
        /// address (channel `email`) or phone number (`sms`), read as the rule's owner
        /// sees the contact when the rule runs; chat goes to users only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to_field: Option<String>,
        /// Subject (template).
        subject: String,
        /// Body (template).
        body: String,
    },
    /// Call a webhook through the delivery outbox (HMAC-SHA256 signed body).
    Webhook {
        /// `https://` (or `http://`) URL.
        url: String,
        /// The signing secret (16 to 200 characters). Write-only: it is stored (the
        /// outbox signs bodies with it) but every read shows
        /// [`crate::WEBHOOK_SECRET_MASK`] instead; on update, the mask or an absent
        /// (empty) secret keeps the stored one (see [`crate::Rules`]).
        #[serde(default)]
        secret: String,
    },
    /// Enrol the record in a sequence (see [`crate::sequences`]): a no-op while it is
    /// enrolled; a new round once its last enrolment completed or exited.
    EnrolSequence {
        /// The sequence (on the trigger's record kind).
        sequence: SequenceId,
    },
    /// Take the record out of a sequence (its active enrolment ends as exited).
    LeaveSequence {
        /// The sequence.
        sequence: SequenceId,
    },
    /// An action another module offers (see [`crate::CustomAction`]).
    Custom {
        /// The action kind, as the offering module names it.
        kind: String,
        /// Its parameters, which the module validates.
        #[serde(default)]
        params: serde_json::Value,
    },
}

/// The action types' names, as the `type` tag of an [`Action`] reads.
pub const ACTION_TYPES: &[&str] = &[
    "set_fields",
    "add_tag",
    "remove_tag",
    "assign_owner",
    "create_activity",
    "log_note",
    "create_ticket",
    "escalate_ticket",
    "move_deal_to_stage",
    "set_lead_status",
    "set_lead_score",
    "add_to_campaign",
    "notify",
    "webhook",
    "enrol_sequence",
    "leave_sequence",
    "custom",
];

impl Action {
    /// The `type` tag.
    pub fn type_name(&self) -> &'static str {
        match self {
            Action::SetFields { .. } => "set_fields",
            Action::AddTag { .. } => "add_tag",
            Action::RemoveTag { .. } => "remove_tag",
            Action::AssignOwner { .. } => "assign_owner",
            Action::CreateActivity { .. } => "create_activity",
            Action::LogNote { .. } => "log_note",
            Action::CreateTicket { .. } => "create_ticket",
            Action::EscalateTicket { .. } => "escalate_ticket",
            Action::MoveDealToStage { .. } => "move_deal_to_stage",
            Action::SetLeadStatus { .. } => "set_lead_status",
            Action::SetLeadScore { .. } => "set_lead_score",
            Action::AddToCampaign { .. } => "add_to_campaign",
            Action::Notify { .. } => "notify",
            Action::Webhook { .. } => "webhook",
            Action::EnrolSequence { .. } => "enrol_sequence",
            Action::LeaveSequence { .. } => "leave_sequence",
            Action::Custom { .. } => "custom",
        }
    }
}

/// What a host's UI builds and stores: a rule's definition, without its system fields.
/// As JSON it carries `"format": 1` ([`FORMAT`]); [`RuleDefinition::from_json`] refuses
/// any other format and malformed JSON with a Validation error naming the part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleDefinition {
    /// A name (1 to [`MAX_NAME`] characters).
    pub name: String,
    /// Whether it runs.
    pub enabled: bool,
    /// What starts it.
    pub trigger: Trigger,
    /// What must hold.
    pub conditions: Conditions,
    /// What it does, in order (1 to [`MAX_ACTIONS`]).
    pub actions: Vec<Action>,
    /// Whether the rule runs again on a change it made itself. `false` (the default, and
    /// absent from the JSON): the loop guard skips such a change, with a line in the run
    /// log. `true`: it runs like any other change, and only the engine's depth limit
    /// ([`crate::EngineConfig::max_depth`]) ends the chain (a rule that appends to a
    /// field it listens to appends that many times).
    #[serde(default, skip_serializing_if = "is_false")]
    pub retrigger_on_own_changes: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Deserialises one part of a rule document, naming `path` on failure.
pub(crate) fn part<T: serde::de::DeserializeOwned>(
    errs: &mut ValidationErrors,
    path: &str,
    v: serde_json::Value,
) -> Option<T> {
    match serde_json::from_value(v) {
        Ok(t) => Some(t),
        Err(e) => {
            errs.push(path, clean_serde(&e));
            None
        }
    }
}

pub(crate) fn clean_serde(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// Parses a trigger, naming `path.kind` for an unknown kind and `path` otherwise.
pub(crate) fn parse_trigger(
    errs: &mut ValidationErrors,
    path: &str,
    v: serde_json::Value,
) -> Option<Trigger> {
    match v.get("kind").and_then(serde_json::Value::as_str) {
        Some(k) if !TRIGGER_KINDS.contains(&k) => {
            errs.push(
                format!("{path}.kind"),
                format!(
                    "{k:?} is not a trigger kind (one of {})",
                    TRIGGER_KINDS.join(", ")
                ),
            );
            None
        }
        None if v.is_object() => {
            errs.push(format!("{path}.kind"), "is required");
            None
        }
        _ => part(errs, path, v),
    }
}

/// Parses actions one by one, naming `path[i].type` for an unknown type and `path[i]`
/// otherwise.
pub(crate) fn parse_actions(
    errs: &mut ValidationErrors,
    path: &str,
    v: serde_json::Value,
) -> Option<Vec<Action>> {
    parse_tagged_list(
        errs,
        path,
        v,
        ("an action", "actions"),
        ACTION_TYPES,
        serde_json::from_value,
    )
}

/// Parses a list of `{"type": ..}` items one by one (`names`: the item with its article
/// and the plural, `("an action", "actions")`): a type not in `types` is named at
/// `path[i].type`, a missing one too, and an item of the wrong shape at `path[i]`. `None`
/// when anything was wrong.
pub(crate) fn parse_tagged_list<T>(
    errs: &mut ValidationErrors,
    path: &str,
    v: serde_json::Value,
    (an_item, items_name): (&str, &str),
    types: &[&str],
    parse: impl Fn(serde_json::Value) -> std::result::Result<T, serde_json::Error>,
) -> Option<Vec<T>> {
    let serde_json::Value::Array(items) = v else {
        errs.push(path, format!("must be a list of {items_name}"));
        return None;
    };
    let mut out = vec![];
    let before = errs.errors.len();
    for (i, item) in items.into_iter().enumerate() {
        let p = format!("{path}[{i}]");
        match item.get("type").and_then(serde_json::Value::as_str) {
            Some(t) if !types.contains(&t) => errs.push(
                format!("{p}.type"),
                format!("{t:?} is not {an_item} type (one of {})", types.join(", ")),
            ),
            None => errs.push(format!("{p}.type"), "is required"),
            _ => match parse(item) {
                Ok(a) => out.push(a),
                Err(e) => errs.push(p, clean_serde(&e)),
            },
        }
    }
    (errs.errors.len() == before).then_some(out)
}

/// Checks the `format` member of a rule document.
pub(crate) fn check_format(errs: &mut ValidationErrors, v: Option<&serde_json::Value>) {
    check_document_format(errs, "rule", v)
}

/// Checks the `format` member of a `what` document (a rule, a sequence): required, and
/// [`FORMAT`].
pub(crate) fn check_document_format(
    errs: &mut ValidationErrors,
    what: &str,
    v: Option<&serde_json::Value>,
) {
    match v {
        None => errs.push(
            "format",
            format!("is required (this crmkit reads format {FORMAT})"),
        ),
        Some(f) if f.as_u64() == Some(u64::from(FORMAT)) => {}
        Some(f) => unknown_format(errs, what, f),
    }
}

/// Checks a `format` given with an input (absent: [`FORMAT`]).
pub(crate) fn check_input_format(errs: &mut ValidationErrors, what: &str, f: Option<u32>) {
    if let Some(f) = f.filter(|f| *f != FORMAT) {
        unknown_format(errs, what, f);
    }
}

fn unknown_format(errs: &mut ValidationErrors, what: &str, f: impl std::fmt::Display) {
    errs.push(
        "format",
        format!("{f} is not a {what} format this crmkit reads (it reads format {FORMAT})"),
    );
}

impl RuleDefinition {
    /// A definition from its JSON text: `format` must be [`FORMAT`]; malformed JSON, an
    /// unknown format, an unknown member, an unknown trigger kind or action type and a
    /// part of the wrong shape are one Validation error naming every bad part (`format`,
    /// `trigger.kind`, `actions[2]`, ...). This checks the shape only; saving a rule
    /// ([`crate::Rules::create`]) checks it against the tenant's kinds, fields and users.
    pub fn from_json(text: &str) -> Result<RuleDefinition> {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::validation("_", format!("is not JSON: {}", clean_serde(&e))))?;
        Self::from_value(v)
    }

    /// [`Self::from_json`] over a parsed JSON value.
    pub fn from_value(v: serde_json::Value) -> Result<RuleDefinition> {
        let mut errs = ValidationErrors::new();
        let serde_json::Value::Object(mut m) = v else {
            return Err(Error::validation("_", "must be a JSON object"));
        };
        check_format(&mut errs, m.get("format"));
        if !errs.is_empty() {
            // Another format's parts may mean something else: read nothing of it.
            return Err(errs.into());
        }
        m.remove("format");
        for k in m.keys() {
            if ![
                "name",
                "enabled",
                "trigger",
                "conditions",
                "actions",
                "retrigger_on_own_changes",
            ]
            .contains(&k.as_str())
            {
                errs.push(k.clone(), "is not a member of a rule");
            }
        }
        let mut take = |k: &str| m.remove(k);
        let name = match take("name") {
            Some(serde_json::Value::String(s)) => Some(s),
            Some(_) => {
                errs.push("name", "must be a string");
                None
            }
            None => {
                errs.push("name", "is required");
                None
            }
        };
        let enabled = match take("enabled") {
            None => Some(true),
            Some(serde_json::Value::Bool(b)) => Some(b),
            Some(_) => {
                errs.push("enabled", "must be true or false");
                None
            }
        };
        let retrigger = match take("retrigger_on_own_changes") {
            None => Some(false),
            Some(serde_json::Value::Bool(b)) => Some(b),
            Some(_) => {
                errs.push("retrigger_on_own_changes", "must be true or false");
                None
            }
        };
        let trigger = match take("trigger") {
            Some(t) => parse_trigger(&mut errs, "trigger", t),
            None => {
                errs.push("trigger", "is required");
                None
            }
        };
        let conditions = match take("conditions") {
            Some(c) => part(&mut errs, "conditions", c),
            None => Some(Conditions::default()),
        };
        let actions = match take("actions") {
            Some(a) => parse_actions(&mut errs, "actions", a),
            None => {
                errs.push("actions", "is required");
                None
            }
        };
        match (name, enabled, trigger, conditions, actions, retrigger) {
            (
                Some(name),
                Some(enabled),
                Some(trigger),
                Some(conditions),
                Some(actions),
                Some(retrigger_on_own_changes),
            ) if errs.is_empty() => Ok(RuleDefinition {
                name,
                enabled,
                trigger,
                conditions,
                actions,
                retrigger_on_own_changes,
            }),
            _ => Err(errs.into()),
        }
    }

    /// The JSON document, with `"format": 1` first.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("format".into(), FORMAT.into());
        if let serde_json::Value::Object(rest) = crmkit_core::service::to_json(self) {
            m.extend(rest);
        }
        serde_json::Value::Object(m)
    }
}

/// A stored rule: its definition, its owner (whose authority it runs with) and the
/// system fields. As JSON (the generic record API's `automation_rule`), the definition's
/// members sit beside the system fields, with `format`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Id.
    pub id: RuleId,
    /// The rule format ([`FORMAT`]).
    pub format: u32,
    /// Name.
    pub name: String,
    /// Whether it runs ([`crate::Rules::enable`] / [`crate::Rules::disable`]).
    pub enabled: bool,
    /// What starts it.
    pub trigger: Trigger,
    /// What must hold.
    pub conditions: Conditions,
    /// What it does, in order.
    pub actions: Vec<Action>,
    /// Whether it runs again on its own changes (see
    /// [`RuleDefinition::retrigger_on_own_changes`]).
    #[serde(default, skip_serializing_if = "is_false")]
    pub retrigger_on_own_changes: bool,
    /// The owner: the rule acts with this user's authority.
    pub owner: UserId,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Soft-deleted.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Version (1 when created, +1 per change).
    pub version: u64,
}

impl Rule {
    /// The rule's definition (what a host stores and can save again).
    pub fn definition(&self) -> RuleDefinition {
        RuleDefinition {
            name: self.name.clone(),
            enabled: self.enabled,
            trigger: self.trigger.clone(),
            conditions: self.conditions.clone(),
            actions: self.actions.clone(),
            retrigger_on_own_changes: self.retrigger_on_own_changes,
        }
    }
}

/// Input for a new rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRule {
    /// The format (absent: [`FORMAT`]; any other value is refused).
    #[serde(default)]
    pub format: Option<u32>,
    /// Name.
    pub name: String,
    /// Whether it runs (true when absent).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// What starts it.
    pub trigger: Trigger,
    /// What must hold.
    #[serde(default)]
    pub conditions: Conditions,
    /// What it does, in order.
    pub actions: Vec<Action>,
    /// Whether it runs again on its own changes (false when absent; see
    /// [`RuleDefinition::retrigger_on_own_changes`]).
    #[serde(default)]
    pub retrigger_on_own_changes: bool,
    /// Owner; the actor when absent. A Rep may only own rules themselves.
    #[serde(default)]
    pub owner: Option<UserId>,
}

fn yes() -> bool {
    true
}

impl NewRule {
    /// An enabled rule with a name, a trigger and no conditions or actions yet.
    pub fn new(name: impl Into<String>, trigger: Trigger) -> Self {
        NewRule {
            format: None,
            name: name.into(),
            enabled: true,
            trigger,
            conditions: Conditions::default(),
            actions: vec![],
            retrigger_on_own_changes: false,
            owner: None,
        }
    }

    /// From a stored definition.
    pub fn from_definition(d: RuleDefinition) -> Self {
        NewRule {
            format: None,
            name: d.name,
            enabled: d.enabled,
            trigger: d.trigger,
            conditions: d.conditions,
            actions: d.actions,
            retrigger_on_own_changes: d.retrigger_on_own_changes,
            owner: None,
        }
    }

    /// The auto-acknowledgement rule: when a ticket opened by email is created, its
    /// requester gets an email with this subject and body (templates over the ticket's
    /// fields: `{{number}}`, `{{subject}}`, ...), once per ticket (the engine applies an
    /// action once per triggering event). A ticket without a requester, or whose
    /// requester has no email address, makes a failed run the host can list.
    pub fn auto_acknowledgement(subject: impl Into<String>, body: impl Into<String>) -> Self {
        NewRule::new(
            "Acknowledge tickets opened by email",
            Trigger::RecordCreated {
                record_kind: "ticket".into(),
            },
        )
        .filter(Filter::eq("channel", "email"))
        .action(Action::Notify {
            channel: Channel::Email,
            to: None,
            to_field: Some("requester".into()),
            subject: subject.into(),
            body: body.into(),
        })
    }

    /// With an action (after the others).
    pub fn action(mut self, a: Action) -> Self {
        self.actions.push(a);
        self
    }

    /// With a condition filter.
    pub fn filter(mut self, f: Filter) -> Self {
        self.conditions.filter = Some(f);
        self
    }

    /// With a change predicate.
    pub fn change(mut self, c: ChangePredicate) -> Self {
        self.conditions.changes.push(c);
        self
    }

    crmkit_core::setters! {
        /// Enabled or not.
        set enabled: bool;
        /// Runs again on its own changes or not.
        set retrigger_on_own_changes: bool;
        /// Owned by this user.
        some owner: UserId;
    }
}

/// A change to a rule: `None` leaves a part alone. Enabling and disabling are
/// [`crate::Rules::enable`] and [`crate::Rules::disable`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulePatch {
    /// The format of the parts given (absent: [`FORMAT`]).
    pub format: Option<u32>,
    /// New name.
    pub name: Option<String>,
    /// New trigger.
    pub trigger: Option<Trigger>,
    /// New conditions.
    pub conditions: Option<Conditions>,
    /// New actions.
    pub actions: Option<Vec<Action>>,
    /// Whether it runs again on its own changes.
    pub retrigger_on_own_changes: Option<bool>,
    /// New owner.
    pub owner: Option<UserId>,
}

impl RulePatch {
    crmkit_core::setters! {
        /// New name.
        some name: String;
        /// New trigger.
        some trigger: Trigger;
        /// New conditions.
        some conditions: Conditions;
        /// New actions.
        some actions: Vec<Action>;
        /// Runs again on its own changes or not.
        some retrigger_on_own_changes: bool;
        /// New owner.
        some owner: UserId;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> serde_json::Value {
        json!({
            "format": 1,
            "name": "Follow up won deals",
            "trigger": {"kind": "record_updated", "record_kind": "deal", "field": "status", "to": "won"},
            "conditions": {"filter": {"Cmp": ["title", "ne", {"Text": "x"}]},
                           "changes": [{"field": "status", "from": null}]},
            "actions": [
                {"type": "create_activity", "activity_type": "task", "subject": "Thank {{title}}",
                 "due_in": {"amount": 2, "unit": "business_days", "calendar": "0190a0a0-0000-7000-8000-000000000001"}},
                {"type": "webhook", "url": "https://example.test/hook", "secret": "0123456789abcdef"},
                {"type": "custom", "kind": "fleet.inspect", "params": {"x": 1}}
            ]
        })
    }

    #[test]
    fn documents_round_trip() {
        let d = RuleDefinition::from_value(doc()).expect("parses");
        assert!(d.enabled);
        let again = RuleDefinition::from_value(d.to_json()).expect("round trip");
        assert_eq!(again, d);
        assert_eq!(d.to_json()["format"], 1);
        match &d.trigger {
            Trigger::RecordUpdated { to, from, .. } => {
                assert_eq!(to, &Some(Some(json!("won"))));
                assert_eq!(from, &None);
            }
            t => panic!("{t:?}"),
        }
        assert_eq!(d.conditions.changes[0].from, Some(None));
    }

    fn fields(r: Result<RuleDefinition>) -> Vec<String> {
        match r {
            Err(Error::Validation(v)) => v.errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected a Validation error, got {other:?}"),
        }
    }

    #[test]
    fn bad_documents_name_the_part() {
        assert_eq!(fields(RuleDefinition::from_json("{nope")), ["_"]);
        assert_eq!(fields(RuleDefinition::from_json("[1]")), ["_"]);
        let mut d = doc();
        d["format"] = json!(2);
        assert_eq!(fields(RuleDefinition::from_value(d)), ["format"]);
        let mut d = doc();
        d.as_object_mut().unwrap().remove("format");
        assert_eq!(fields(RuleDefinition::from_value(d)), ["format"]);
        let mut d = doc();
        d["trigger"]["kind"] = json!("record_exploded");
        d["actions"][1]["type"] = json!("teleport");
        d["actions"][2] = json!({"type": "webhook"});
        d["extra"] = json!(1);
        assert_eq!(
            fields(RuleDefinition::from_value(d)),
            ["extra", "trigger.kind", "actions[1].type", "actions[2]"]
        );
        let mut d = doc();
        d["retrigger_on_own_changes"] = json!("yes");
        assert_eq!(
            fields(RuleDefinition::from_value(d)),
            ["retrigger_on_own_changes"]
        );
        let mut d = doc();
        d["retrigger_on_own_changes"] = json!(true);
        let r = RuleDefinition::from_value(d).expect("the option parses");
        assert!(r.retrigger_on_own_changes);
        assert_eq!(r.to_json()["retrigger_on_own_changes"], true);
        assert!(doc().get("retrigger_on_own_changes").is_none());
        let mut d = doc();
        d["conditions"] = json!({"filter": 12});
        d["name"] = json!(5);
        assert_eq!(
            fields(RuleDefinition::from_value(d)),
            ["name", "conditions"]
        );
    }
}
