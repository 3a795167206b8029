//! Validation of a rule on save, against the tenant's composed kinds (their
//! descriptions, custom fields and event kinds), its directory and its records, as the
//! saving actor sees them. Every problem is reported at once, each naming its part.

use crmkit_core::action::CustomActions;
use crmkit_core::query::FieldValue;
use crmkit_core::record::{FieldAccess, FieldType, KindDescription, check_body};
use crmkit_core::{
    Ctx, CustomFieldType, CustomValues, Error, Filter, RecordKind, RecordRef, Result, Store,
    ValidationErrors,
};
use serde_json::Value as Json;

use crate::model::{
    Action, Conditions, MAX_ACTIONS, MAX_NAME, Offset, Recurrence, TimeUnit, Trigger,
};

/// A description whose every field is writable and optional: `check_body` over it checks
/// only names and JSON types (conditions and change values may name read-only fields).
fn any_field(d: &KindDescription) -> KindDescription {
    let mut d = d.clone();
    for f in &mut d.fields {
        f.access = FieldAccess::ReadWrite;
        f.required = false;
    }
    d
}

/// The JSON type a custom field's value has inside a record (`custom.<key>`'s `value`).
fn custom_json_type(ty: &CustomFieldType) -> FieldType {
    match ty {
        CustomFieldType::Text { max_len } => FieldType::text(*max_len),
        CustomFieldType::Number => FieldType::Int,
        CustomFieldType::Decimal => FieldType::Decimal,
        CustomFieldType::Money { .. } => FieldType::Money,
        CustomFieldType::Bool => FieldType::Bool,
        CustomFieldType::Date => FieldType::Date,
        CustomFieldType::DateTime => FieldType::Timestamp,
        CustomFieldType::SingleChoice { choices } => FieldType::Choice(choices.clone()),
        CustomFieldType::MultiChoice { choices } => FieldType::Choice(choices.clone()),
        CustomFieldType::Reference { .. } => FieldType::Id,
    }
}

/// The type of a field of `d` (built-in, or `custom.<key>`), or `None` when there is no
/// such field.
fn field_type(d: &KindDescription, name: &str) -> Option<FieldType> {
    match name.strip_prefix("custom.") {
        Some(key) if d.has_custom_fields => d
            .custom_fields
            .iter()
            .find(|c| c.key == key)
            .map(|c| custom_json_type(&c.ty)),
        Some(_) => None,
        None => d.get(name).map(|f| f.ty.clone()),
    }
}

/// Checks that `v` is a JSON value of field `name`'s type (`null` allowed: "no value").
fn check_json_value(
    errs: &mut ValidationErrors,
    d: &KindDescription,
    path: &str,
    name: &str,
    v: &Json,
) {
    if v.is_null() {
        return;
    }
    let Some(ty) = field_type(d, name) else {
        return;
    };
    let probe = KindDescription::new("probe", "", "", "")
        .field(crmkit_core::record::FieldDescription::new("v", ty).nullable());
    let mut body = serde_json::Map::new();
    body.insert("v".into(), v.clone());
    if let Err(Error::Validation(e)) = check_body(&probe, Json::Object(body), true) {
        for fe in e.errors {
            errs.push(path, fe.reason);
        }
    }
}

fn unknown_field(d: &KindDescription) -> String {
    format!("is not a field of {}", d.kind)
}

/// Checks a filter over a record's JSON field names against `d`.
pub(crate) fn check_filter(
    errs: &mut ValidationErrors,
    d: &KindDescription,
    path: &str,
    f: &Filter,
    depth: usize,
) {
    if depth > 32 {
        errs.push(path, "is nested more than 32 levels deep");
        return;
    }
    let mut name_ty = |name: &str| -> Option<FieldType> {
        let p = format!("{path}.{name}");
        match field_type(d, name) {
            None => {
                errs.push(p, unknown_field(d));
                None
            }
            Some(t) => Some(t),
        }
    };
    match f {
        Filter::And(fs) | Filter::Or(fs) => {
            for f in fs {
                check_filter(errs, d, path, f, depth + 1);
            }
        }
        Filter::Not(f) => check_filter(errs, d, path, f, depth + 1),
        Filter::IsNull(name) => {
            name_ty(name);
        }
        Filter::Cmp(name, _, v) => {
            if let Some(ty) = name_ty(name) {
                check_filter_value(errs, &format!("{path}.{name}"), &ty, v);
            }
        }
        Filter::In(name, vs) => {
            if let Some(ty) = name_ty(name) {
                if vs.len() > 1000 {
                    errs.push(format!("{path}.{name}"), "`in` takes at most 1000 values");
                }
                for v in vs {
                    check_filter_value(errs, &format!("{path}.{name}"), &ty, v);
                }
            }
        }
        Filter::Contains(name, _) | Filter::StartsWith(name, _) => {
            if let Some(ty) = name_ty(name)
                && !matches!(ty, FieldType::Text { .. })
            {
                errs.push(format!("{path}.{name}"), "text search needs a text field");
            }
        }
    }
}

/// Checks a filter value against a field's JSON type.
fn check_filter_value(errs: &mut ValidationErrors, path: &str, ty: &FieldType, v: &FieldValue) {
    use FieldValue as V;
    let ok = match (ty, v) {
        (_, V::Null) => {
            errs.push(path, "a comparison with null never holds; use is_null");
            return;
        }
        (FieldType::Text { .. }, V::Text(_)) => true,
        (FieldType::Choice(c), V::Text(t)) => {
            if !c.contains(t) {
                errs.push(path, format!("{t:?} is not one of {}", c.join(", ")));
                return;
            }
            true
        }
        (FieldType::Int, V::Int(_)) => true,
        (FieldType::Decimal | FieldType::Money, V::Decimal(_) | V::Int(_)) => true,
        (FieldType::Bool, V::Bool(_)) => true,
        (FieldType::Date, V::Date(_)) => true,
        (FieldType::Date, V::Text(t)) => chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").is_ok(),
        (FieldType::Timestamp, V::Timestamp(_)) => true,
        (FieldType::Timestamp, V::Text(t)) => chrono::DateTime::parse_from_rfc3339(t).is_ok(),
        (FieldType::Id | FieldType::Reference(_), V::Uuid(_)) => true,
        (FieldType::Id | FieldType::Reference(_), V::Text(t)) => uuid::Uuid::parse_str(t).is_ok(),
        (FieldType::Currency, V::Text(t)) => crmkit_core::Currency::parse(t).is_ok(),
        (
            FieldType::List(_) | FieldType::Object | FieldType::Custom | FieldType::AnyReference(_),
            _,
        ) => {
            errs.push(path, "cannot be compared (use is_null)");
            return;
        }
        _ => false,
    };
    if !ok {
        errs.push(path, format!("is a field of another type than {v:?}"));
    }
}

/// The `{{placeholder}}`s of a template, or the reason it is malformed.
pub(crate) fn placeholders(template: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = vec![];
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            return Err("has a `{{` without a closing `}}`".into());
        };
        out.push(after[..j].trim().to_owned());
        rest = &after[j + 2..];
    }
    Ok(out)
}

/// Checks a template's placeholders against the record kind's fields.
fn check_template(errs: &mut ValidationErrors, d: Option<&KindDescription>, path: &str, t: &str) {
    match placeholders(t) {
        Err(reason) => errs.push(path, reason),
        Ok(names) => {
            for n in names {
                let known = d.is_some_and(|d| field_type(d, &n).is_some());
                if !known {
                    let of = d
                        .map(|d| d.kind.to_string())
                        .unwrap_or_else(|| "the trigger".into());
                    errs.push(
                        path,
                        format!("unknown placeholder {{{{{n}}}}} (not a field of {of})"),
                    );
                }
            }
        }
    }
}

/// Validates a rule's name, trigger, conditions and actions for `ctx`'s tenant, pushing
/// every problem into `errs`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn check_rule(
    store: &Store,
    ctx: &Ctx,
    custom_actions: &CustomActions,
    errs: &mut ValidationErrors,
    name: &str,
    trigger: &Trigger,
    conditions: &Conditions,
    actions: &[Action],
) -> Result<()> {
    errs.check(crmkit_core::text::check_text("name", name, MAX_NAME, true));
    let records = store.records();
    // The record kind of the trigger, described with the tenant's custom fields.
    let mut desc: Option<KindDescription> = None;
    let kind_path = match trigger {
        Trigger::Event { .. } => "trigger.event",
        _ => "trigger.record_kind",
    };
    if let Trigger::Event { event } = trigger {
        let known = store
            .modules()
            .iter()
            .any(|m| m.event_kinds().contains(&event.as_str()));
        if !known {
            errs.push(
                "trigger.event",
                format!("{event:?} is not an event kind of the composed modules"),
            );
        }
    }
    if let Some(kind) = trigger.record_kind() {
        match records.describe(ctx, kind).await {
            Ok(d) => desc = Some(d),
            Err(Error::Validation(_)) => {
                if !matches!(trigger, Trigger::Event { .. }) {
                    errs.push(
                        kind_path,
                        format!("{kind:?} is not a record kind of the composed modules"),
                    );
                }
            }
            Err(e) => return Err(e),
        }
    }
    let d = desc.as_ref();
    check_trigger(store, ctx, errs, trigger, d).await?;
    if let Some(d) = d {
        if let Some(f) = &conditions.filter {
            check_filter(errs, d, "conditions.filter", f, 0);
        }
        let any = any_field(d);
        for (i, p) in conditions.changes.iter().enumerate() {
            let path = format!("conditions.changes[{i}]");
            if field_type(&any, &p.field).is_none() {
                errs.push(format!("{path}.field"), unknown_field(d));
                continue;
            }
            for (which, v) in [("from", &p.from), ("to", &p.to)] {
                if let Some(Some(v)) = v {
                    check_json_value(errs, &any, &format!("{path}.{which}"), &p.field, v);
                }
            }
        }
    } else if conditions.filter.is_some() || !conditions.changes.is_empty() {
        errs.push("conditions", "need a trigger on a record kind");
    }
    if actions.is_empty() {
        errs.push("actions", "a rule needs at least one action");
    }
    if actions.len() > MAX_ACTIONS {
        errs.push("actions", format!("at most {MAX_ACTIONS} actions"));
    }
    for (i, a) in actions.iter().enumerate() {
        check_action(
            store,
            ctx,
            custom_actions,
            errs,
            &format!("actions[{i}]"),
            a,
            d,
        )
        .await?;
    }
    Ok(())
}

fn check_offset(errs: &mut ValidationErrors, path: &str, o: &Offset, kinds: &[RecordKind]) {
    let max = match o.unit {
        TimeUnit::Minutes => 60 * 24 * 366,
        TimeUnit::Hours => 24 * 366,
        TimeUnit::Days | TimeUnit::BusinessDays => 3660,
    };
    if o.amount == 0 || o.amount > max {
        errs.push(format!("{path}.amount"), format!("must be 1 to {max}"));
    }
    match (o.unit, o.calendar) {
        (TimeUnit::BusinessDays, None) => errs.push(
            format!("{path}.calendar"),
            "business days need an SLA calendar",
        ),
        (TimeUnit::BusinessDays, Some(_))
            if !kinds.iter().any(|k| k.as_str() == "sla_calendar") =>
        {
            errs.push(
                format!("{path}.calendar"),
                "no composed module offers SLA calendars",
            );
        }
        (TimeUnit::BusinessDays, Some(_)) => {}
        (_, Some(_)) => errs.push(
            format!("{path}.calendar"),
            "only business days take a calendar",
        ),
        _ => {}
    }
}

async fn check_calendar(
    store: &Store,
    ctx: &Ctx,
    errs: &mut ValidationErrors,
    path: &str,
    o: &Offset,
) -> Result<()> {
    if let (TimeUnit::BusinessDays, Some(c)) = (o.unit, o.calendar)
        && store
            .records()
            .kinds()
            .iter()
            .any(|k| k.kind.as_str() == "sla_calendar")
        && !store.records().visible(ctx, &RecordRef::from(c)).await?
    {
        errs.push(
            format!("{path}.calendar"),
            crmkit_core::record::reference_reason(&RecordRef::from(c).kind),
        );
    }
    Ok(())
}

async fn check_trigger(
    store: &Store,
    ctx: &Ctx,
    errs: &mut ValidationErrors,
    trigger: &Trigger,
    d: Option<&KindDescription>,
) -> Result<()> {
    let kinds: Vec<RecordKind> = store
        .records()
        .kinds()
        .into_iter()
        .map(|k| k.kind)
        .collect();
    match trigger {
        Trigger::RecordUpdated {
            field, from, to, ..
        } => match (field, d) {
            (None, _) if from.is_some() || to.is_some() => {
                errs.push("trigger.field", "`from` and `to` need a field")
            }
            (Some(f), Some(d)) => {
                let any = any_field(d);
                if field_type(&any, f).is_none() {
                    errs.push("trigger.field", unknown_field(d));
                } else {
                    for (which, v) in [("from", from), ("to", to)] {
                        if let Some(Some(v)) = v {
                            check_json_value(errs, &any, &format!("trigger.{which}"), f, v);
                        }
                    }
                }
            }
            _ => {}
        },
        Trigger::Relative { field, offset, .. } => {
            if let Some(d) = d {
                match field_type(d, field) {
                    None => errs.push("trigger.field", unknown_field(d)),
                    Some(FieldType::Date | FieldType::Timestamp) => {}
                    Some(_) => errs.push("trigger.field", "must be a date or timestamp field"),
                }
            }
            check_offset(errs, "trigger.offset", offset, &kinds);
            check_calendar(store, ctx, errs, "trigger.offset", offset).await?;
        }
        Trigger::Schedule {
            record_kind,
            every,
            at,
            time_zone,
            filter,
        } => {
            if let Recurrence::Monthly { day } = every
                && !(1..=28).contains(day)
            {
                errs.push(
                    "trigger.every.day",
                    "must be 1 to 28 (a day every month has)",
                );
            }
            if chrono::NaiveTime::parse_from_str(at, "%H:%M").is_err() || at.len() != 5 {
                errs.push("trigger.at", "must be a local time HH:MM (00:00 to 23:59)");
            }
            if let Err(Error::Validation(v)) =
                crmkit_core::directory::parse_time_zone("trigger.time_zone", time_zone)
            {
                errs.errors.extend(v.errors);
            }
            if let (Some(f), Some(_)) = (filter, d) {
                // The schedule selects records with a list query: let the query check it.
                let q = crmkit_core::Query::new().filter(f.clone()).limit(1);
                match store.records().list(ctx, record_kind, &q).await {
                    Ok(_) => {}
                    Err(Error::Validation(v)) => {
                        for e in v.errors {
                            errs.push(format!("trigger.{}", e.field), e.reason);
                        }
                    }
                    Err(Error::PermissionDenied(_)) => {
                        errs.push("trigger.record_kind", "the actor cannot list these records")
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether the kind has a field of this name that a generic patch may write.
fn patchable(d: &KindDescription, field: &str) -> bool {
    d.get(field)
        .is_some_and(|f| f.access == FieldAccess::ReadWrite)
}

fn needs_kind(
    errs: &mut ValidationErrors,
    path: &str,
    action: &str,
    d: Option<&KindDescription>,
    kinds: &[&str],
) -> bool {
    match d {
        Some(d) if kinds.contains(&d.kind.as_str()) => true,
        Some(d) => {
            errs.push(
                format!("{path}.type"),
                format!(
                    "{action} does not apply to a {} (only to {})",
                    d.kind,
                    kinds.join(", ")
                ),
            );
            false
        }
        None => {
            errs.push(
                format!("{path}.type"),
                format!(
                    "{action} needs a trigger on a record of {}",
                    kinds.join(", ")
                ),
            );
            false
        }
    }
}

fn needs_composed(store: &Store, errs: &mut ValidationErrors, path: &str, kind: &str) -> bool {
    let ok = store
        .records()
        .kinds()
        .iter()
        .any(|k| k.kind.as_str() == kind);
    if !ok {
        errs.push(
            format!("{path}.type"),
            format!("needs the {kind} kind, which no composed module declares"),
        );
    }
    ok
}

async fn check_user(
    store: &Store,
    ctx: &Ctx,
    errs: &mut ValidationErrors,
    path: &str,
    u: crmkit_core::UserId,
) -> Result<()> {
    if let Err(e) = store.directory().require_active_user(ctx, path, u).await {
        errs.check::<()>(Err(e));
    }
    Ok(())
}

fn choices_of(d: &KindDescription, field: &str) -> Vec<String> {
    match d.get(field).map(|f| &f.ty) {
        Some(FieldType::Choice(c)) => c.clone(),
        _ => vec![],
    }
}

#[allow(clippy::too_many_lines)]
async fn check_action(
    store: &Store,
    ctx: &Ctx,
    custom_actions: &CustomActions,
    errs: &mut ValidationErrors,
    path: &str,
    a: &Action,
    d: Option<&KindDescription>,
) -> Result<()> {
    let records = store.records();
    let tmpl = |errs: &mut ValidationErrors, field: &str, t: &str| {
        check_template(errs, d, &format!("{path}.{field}"), t);
    };
    match a {
        Action::SetFields { fields } => {
            let Some(d) = d else {
                errs.push(
                    format!("{path}.type"),
                    "set_fields needs a trigger on a record kind",
                );
                return Ok(());
            };
            if fields.is_empty() {
                errs.push(format!("{path}.fields"), "sets no field");
            }
            let mut plain = serde_json::Map::new();
            for (k, v) in fields {
                let p = format!("{path}.fields.{k}");
                match v.as_str() {
                    Some(s) if s.contains("{{") => {
                        match d.get(k).map(|f| &f.ty) {
                            Some(FieldType::Text { .. }) => check_template(errs, Some(d), &p, s),
                            _ => errs.push(p.clone(), "templates are allowed in text fields only"),
                        }
                        // Still check that the field may be written.
                        plain.insert(k.clone(), Json::String(String::new()));
                    }
                    _ => {
                        plain.insert(k.clone(), v.clone());
                    }
                }
            }
            if let Err(Error::Validation(v)) = check_body(d, Json::Object(plain.clone()), false) {
                for e in v.errors {
                    let p = format!("{path}.fields.{}", e.field);
                    if !errs.has(&p) {
                        errs.push(p, e.reason);
                    }
                }
            }
            // References must be records the rule's author may refer to; users active.
            for (k, v) in &plain {
                let (Some(f), Some(s)) = (d.get(k), v.as_str()) else {
                    continue;
                };
                let FieldType::Reference(to) = &f.ty else {
                    continue;
                };
                let Ok(id) = uuid::Uuid::parse_str(s) else {
                    continue;
                };
                let p = format!("{path}.fields.{k}");
                if to == &RecordKind::USER {
                    check_user(store, ctx, errs, &p, crmkit_core::UserId::from_uuid(id)).await?;
                } else if to == &RecordKind::TEAM {
                    if let Err(Error::NotFound { .. }) = store
                        .directory()
                        .team(ctx, crmkit_core::TeamId::from_uuid(id))
                        .await
                    {
                        errs.push(p, "is not a team of this tenant");
                    }
                } else if !records
                    .visible(ctx, &RecordRef::new(to.clone(), id))
                    .await?
                {
                    errs.push(p, crmkit_core::record::reference_reason(to));
                }
            }
            if let Some(Json::Object(custom)) = plain.get("custom") {
                match serde_json::from_value::<CustomValues>(Json::Object(custom.clone())) {
                    Ok(values) => {
                        let schema = store.custom_fields().of_kind(ctx, &d.kind).await?;
                        for (key, v) in &values {
                            let mut one = CustomValues::new();
                            one.insert(key.clone(), v.clone());
                            if let Err(Error::Validation(e)) = schema.validate(&one) {
                                for fe in e
                                    .errors
                                    .into_iter()
                                    .filter(|fe| fe.field == format!("custom.{key}"))
                                {
                                    errs.push(format!("{path}.fields.{}", fe.field), fe.reason);
                                }
                            }
                        }
                    }
                    Err(e) => errs.push(format!("{path}.fields.custom"), e.to_string()),
                }
            }
        }
        Action::AddTag { tag } | Action::RemoveTag { tag } => {
            if let Err(Error::Validation(v)) = crmkit_core::text::check_text("tag", tag, 50, true) {
                errs.extend_prefixed(&format!("{path}."), v);
            }
            match d {
                Some(d) if patchable(d, "tags") => {}
                Some(d) => errs.push(format!("{path}.type"), format!("a {} has no tags", d.kind)),
                None => errs.push(
                    format!("{path}.type"),
                    "tags need a trigger on a record kind",
                ),
            }
        }
        Action::AssignOwner {
            strategy,
            team,
            users,
            capacity,
        } => {
            check_capacity(errs, path, capacity.as_ref(), users);
            match d {
                Some(d) if patchable(d, "owner") => {}
                Some(d) => errs.push(
                    format!("{path}.type"),
                    format!("a {} has no owner to assign", d.kind),
                ),
                None => errs.push(
                    format!("{path}.type"),
                    "assigning needs a trigger on a record kind",
                ),
            }
            match (team, users.is_empty()) {
                (Some(_), false) => {
                    errs.push(format!("{path}.users"), "give a team or users, not both")
                }
                (None, true) => {
                    errs.push(format!("{path}.users"), "give a team or at least one user")
                }
                _ => {}
            }
            if let Some(t) = team
                && let Err(Error::NotFound { .. }) = store.directory().team(ctx, *t).await
            {
                errs.push(format!("{path}.team"), "is not a team of this tenant");
            }
            for (i, m) in users.iter().enumerate() {
                check_user(store, ctx, errs, &format!("{path}.users[{i}].user"), m.user).await?;
                if m.weight == 0 || m.weight > 1000 {
                    errs.push(format!("{path}.users[{i}].weight"), "must be 1 to 1000");
                } else if m.weight != 1 && *strategy != crate::model::Strategy::Weighted {
                    errs.push(
                        format!("{path}.users[{i}].weight"),
                        "weights need the weighted strategy",
                    );
                }
            }
            let mut seen = std::collections::BTreeSet::new();
            for (i, m) in users.iter().enumerate() {
                if !seen.insert(m.user) {
                    errs.push(format!("{path}.users[{i}].user"), "is listed twice");
                }
            }
        }
        Action::CreateActivity {
            activity_type,
            subject,
            due_in,
        } => {
            if needs_composed(store, errs, path, "activity") {
                let types = records
                    .kinds()
                    .into_iter()
                    .find(|k| k.kind.as_str() == "activity")
                    .map(|k| choices_of(&k, "type"))
                    .unwrap_or_default();
                if !types.contains(activity_type) {
                    errs.push(
                        format!("{path}.activity_type"),
                        format!("must be one of {}", types.join(", ")),
                    );
                }
                if let Some(d) = d
                    && let Some(a) = records
                        .kinds()
                        .into_iter()
                        .find(|k| k.kind.as_str() == "activity")
                    && !relates_to(&a, &d.kind)
                {
                    errs.push(
                        format!("{path}.type"),
                        format!("activities cannot relate to a {}", d.kind),
                    );
                }
            }
            tmpl(errs, "subject", subject);
            if subject.trim().is_empty() {
                errs.push(format!("{path}.subject"), "is required");
            }
            if let Some(o) = due_in {
                let kinds: Vec<RecordKind> = records.kinds().into_iter().map(|k| k.kind).collect();
                check_offset(errs, &format!("{path}.due_in"), o, &kinds);
                check_calendar(store, ctx, errs, &format!("{path}.due_in"), o).await?;
            }
        }
        Action::LogNote { body } => {
            if needs_composed(store, errs, path, "activity")
                && let Some(d) = d
                && let Some(a) = records
                    .kinds()
                    .into_iter()
                    .find(|k| k.kind.as_str() == "activity")
                && !relates_to(&a, &d.kind)
            {
                errs.push(
                    format!("{path}.type"),
                    format!("notes cannot relate to a {}", d.kind),
                );
            }
            if body.trim().is_empty() {
                errs.push(format!("{path}.body"), "is required");
            }
            tmpl(errs, "body", body);
        }
        Action::CreateTicket { subject, priority } => {
            if needs_composed(store, errs, path, "ticket") {
                if let Some(p) = priority {
                    let ticket = records
                        .kinds()
                        .into_iter()
                        .find(|k| k.kind.as_str() == "ticket");
                    let prios = ticket
                        .map(|t| choices_of(&t, "priority"))
                        .unwrap_or_default();
                    if !prios.contains(p) {
                        errs.push(
                            format!("{path}.priority"),
                            format!("must be one of {}", prios.join(", ")),
                        );
                    }
                }
                // A ticket needs a requester: the contact, or the triggering ticket's.
                needs_kind(errs, path, "create_ticket", d, &["contact", "ticket"]);
            }
            if subject.trim().is_empty() {
                errs.push(format!("{path}.subject"), "is required");
            }
            tmpl(errs, "subject", subject);
        }
        Action::EscalateTicket { reason } => {
            needs_kind(errs, path, "escalate_ticket", d, &["ticket"]);
            tmpl(errs, "reason", reason);
        }
        Action::MoveDealToStage { stage } => {
            if needs_kind(errs, path, "move_deal_to_stage", d, &["deal"])
                && !stage_exists(store, ctx, *stage).await?
            {
                errs.push(
                    format!("{path}.stage"),
                    "is not a stage of a pipeline of this tenant",
                );
            }
        }
        Action::SetLeadStatus { status } => {
            if needs_kind(errs, path, "set_lead_status", d, &["lead"])
                && let Some(d) = d
            {
                let statuses = choices_of(d, "status");
                if !statuses.contains(status) || status == "converted" {
                    let settable: Vec<_> = statuses
                        .iter()
                        .filter(|s| *s != "converted")
                        .cloned()
                        .collect();
                    errs.push(
                        format!("{path}.status"),
                        format!("must be one of {}", settable.join(", ")),
                    );
                }
            }
        }
        Action::SetLeadScore { .. } => {
            needs_kind(errs, path, "set_lead_score", d, &["lead"]);
        }
        Action::AddToCampaign { campaign } => {
            if needs_kind(errs, path, "add_to_campaign", d, &["lead", "contact"])
                && !records.visible(ctx, &RecordRef::from(*campaign)).await?
            {
                errs.push(
                    format!("{path}.campaign"),
                    crmkit_core::record::reference_reason(&RecordRef::from(*campaign).kind),
                );
            }
        }
        Action::Notify {
            channel,
            to,
            to_field,
            subject,
            body,
        } => {
            match (to, to_field) {
                (Some(_), Some(_)) => {
                    errs.push(format!("{path}.to_field"), "give to or to_field, not both")
                }
                (Some(u), None) => check_user(store, ctx, errs, &format!("{path}.to"), *u).await?,
                (None, Some(f)) => check_recipient_field(errs, path, d, f, *channel),
                (None, None) => {
                    if d.is_none_or(|d| d.get("owner").is_none()) {
                        errs.push(
                            format!("{path}.to"),
                            "is required when the trigger's records have no owner",
                        );
                    }
                }
            }
            if subject.trim().is_empty() {
                errs.push(format!("{path}.subject"), "is required");
            }
            tmpl(errs, "subject", subject);
            tmpl(errs, "body", body);
        }
        Action::Webhook { url, secret } => {
            let lower = url.to_ascii_lowercase();
            let scheme_ok = lower.starts_with("https://") || lower.starts_with("http://");
            let host = lower.split("://").nth(1).unwrap_or("");
            if !scheme_ok
                || host.is_empty()
                || host.starts_with('/')
                || url.len() > 2000
                || url.chars().any(char::is_whitespace)
            {
                errs.push(
                    format!("{path}.url"),
                    "must be an http or https URL of at most 2000 characters",
                );
            }
            let n = secret.chars().count();
            if secret.is_empty() || secret == crate::service::WEBHOOK_SECRET_MASK {
                errs.push(
                    format!("{path}.secret"),
                    "is required (16 to 200 characters): a new webhook action has no stored secret to keep",
                );
            } else if !(16..=200).contains(&n) {
                errs.push(format!("{path}.secret"), "must be 16 to 200 characters");
            }
        }
        Action::EnrolSequence { sequence } | Action::LeaveSequence { sequence } => {
            // As the saving actor sees it: a hidden sequence is refused exactly like a
            // missing one.
            match crate::sequences::Sequences::new(store)?
                .get(ctx, *sequence)
                .await
            {
                Ok(seq) => match d {
                    Some(d) if seq.record_kind == d.kind.as_str() => {}
                    Some(d) => errs.push(
                        format!("{path}.sequence"),
                        format!(
                            "the sequence is on {} records, not on a {}",
                            seq.record_kind, d.kind
                        ),
                    ),
                    None => errs.push(
                        format!("{path}.type"),
                        "sequences need a trigger on a record kind",
                    ),
                },
                Err(Error::NotFound { .. }) => errs.push(
                    format!("{path}.sequence"),
                    "is not a sequence of this tenant",
                ),
                Err(e) => return Err(e),
            }
        }
        Action::Custom { kind, params } => match custom_actions.get(kind.as_str()) {
            None => errs.push(
                format!("{path}.kind"),
                format!("{kind:?} is not an action kind a composed module offers"),
            ),
            Some(c) => {
                if !c.applies_to(d.map(|d| d.kind.as_str())) {
                    let on = d
                        .map(|d| d.kind.to_string())
                        .unwrap_or_else(|| "this trigger".into());
                    errs.push(
                        format!("{path}.kind"),
                        format!("{kind} does not apply to a {on}"),
                    );
                }
                match c.validate(params) {
                    Ok(()) => {}
                    Err(Error::Validation(v)) => {
                        errs.extend_prefixed(&format!("{path}.params."), v)
                    }
                    Err(e) => return Err(e),
                }
                // The engine renders every string of the parameters as a template.
                check_param_templates(errs, d, &format!("{path}.params"), params);
            }
        },
    }
    Ok(())
}

/// Validates a sequence's name, record kind, steps and exit conditions for `ctx`'s
/// tenant, pushing every problem into `errs`: each action step is checked as a rule's
/// action on the sequence's record kind, each wait as an offset.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn check_sequence(
    store: &Store,
    ctx: &Ctx,
    custom_actions: &CustomActions,
    errs: &mut ValidationErrors,
    name: &str,
    record_kind: &str,
    steps: &[crate::sequences::SequenceStep],
    exit: &crate::sequences::Exit,
) -> Result<()> {
    use crate::sequences::{MAX_STEPS, SequenceStep};
    errs.check(crmkit_core::text::check_text("name", name, MAX_NAME, true));
    let records = store.records();
    let desc = match records.describe(ctx, record_kind).await {
        Ok(d) => Some(d),
        Err(Error::Validation(_)) => {
            errs.push(
                "record_kind",
                format!("{record_kind:?} is not a record kind of the composed modules"),
            );
            None
        }
        Err(e) => return Err(e),
    };
    let d = desc.as_ref();
    if steps.is_empty() {
        errs.push("steps", "a sequence needs at least one step");
    }
    if steps.len() > MAX_STEPS {
        errs.push("steps", format!("at most {MAX_STEPS} steps"));
    }
    if let Some(SequenceStep::Wait(_)) = steps.last() {
        errs.push(
            format!("steps[{}]", steps.len() - 1),
            "the last step cannot be a wait (nothing would follow it)",
        );
    }
    let kinds: Vec<RecordKind> = records.kinds().into_iter().map(|k| k.kind).collect();
    for (i, step) in steps.iter().enumerate() {
        let path = format!("steps[{i}]");
        match step {
            SequenceStep::Wait(o) => {
                check_offset(errs, &path, o, &kinds);
                check_calendar(store, ctx, errs, &path, o).await?;
            }
            SequenceStep::Action(
                a @ (Action::EnrolSequence { .. }
                | Action::LeaveSequence { .. }
                | Action::Webhook { .. }
                | Action::AssignOwner { .. }),
            ) => errs.push(
                format!("{path}.type"),
                format!(
                    "a sequence step cannot be {} (not one of a sequence's actions)",
                    a.type_name()
                ),
            ),
            SequenceStep::Action(a) => {
                check_action(store, ctx, custom_actions, errs, &path, a, d).await?;
            }
        }
    }
    if let (Some(f), Some(d)) = (&exit.filter, d) {
        check_filter(errs, d, "exit.filter", f, 0);
    }
    if !exit.activities.is_empty() {
        match records
            .kinds()
            .into_iter()
            .find(|k| k.kind.as_str() == "activity")
        {
            None => errs.push(
                "exit.activities",
                "needs the activity kind, which no composed module declares",
            ),
            Some(a) => {
                let types = choices_of(&a, "type");
                let mut seen = std::collections::BTreeSet::new();
                for (i, t) in exit.activities.iter().enumerate() {
                    let p = format!("exit.activities[{i}]");
                    if !types.contains(t) {
                        errs.push(p, format!("must be one of {}", types.join(", ")));
                    } else if !seen.insert(t) {
                        errs.push(p, "is listed twice");
                    }
                }
                if let Some(d) = d
                    && !relates_to(&a, &d.kind)
                {
                    errs.push(
                        "exit.activities",
                        format!("activities cannot relate to a {}", d.kind),
                    );
                }
            }
        }
    }
    Ok(())
}

/// Whether the activity kind's `related` field may refer to `kind`.
pub(crate) fn relates_to(activity: &KindDescription, kind: &RecordKind) -> bool {
    fn walk(t: &FieldType, kind: &RecordKind) -> bool {
        match t {
            FieldType::AnyReference(ks) => ks.is_empty() || ks.contains(kind),
            FieldType::Reference(k) => k == kind,
            FieldType::List(of) => walk(of, kind),
            _ => false,
        }
    }
    activity.get("related").is_some_and(|f| walk(&f.ty, kind))
}

/// Whether `stage` is a stage of a pipeline of the tenant (pipelines are tenant settings
/// every actor reads, through the generic record API).
async fn stage_exists(store: &Store, ctx: &Ctx, stage: crmkit_core::StageId) -> Result<bool> {
    let want = stage.to_string();
    let mut q = crmkit_core::Query::new().limit(1000);
    loop {
        let page = store.records().list(ctx, "pipeline", &q).await?;
        for p in &page.items {
            let stages = p.get("stages").and_then(Json::as_array);
            if stages.is_some_and(|s| {
                s.iter()
                    .any(|st| st.get("id").and_then(Json::as_str) == Some(want.as_str()))
            }) {
                return Ok(true);
            }
        }
        match page.next_cursor {
            Some(c) => q = q.after(c),
            None => return Ok(false),
        }
    }
}

/// Most records a member can be given per period.
const MAX_CAPACITY: u32 = 100_000;

/// An assignment's capacities: a valid time zone, caps of 1 to [`MAX_CAPACITY`], member
/// caps only with the action's capacity, and some cap when there is a capacity.
fn check_capacity(
    errs: &mut ValidationErrors,
    path: &str,
    capacity: Option<&crate::model::Capacity>,
    users: &[crate::model::PoolMember],
) {
    let bad_cap = |c: u32| c == 0 || c > MAX_CAPACITY;
    for (i, m) in users.iter().enumerate() {
        match m.capacity {
            Some(c) if bad_cap(c) => errs.push(
                format!("{path}.users[{i}].capacity"),
                format!("must be 1 to {MAX_CAPACITY}"),
            ),
            Some(_) if capacity.is_none() => errs.push(
                format!("{path}.users[{i}].capacity"),
                "a member's capacity needs the action's capacity (its period and time zone)",
            ),
            _ => {}
        }
    }
    let Some(c) = capacity else {
        return;
    };
    if let Err(Error::Validation(v)) =
        crmkit_core::directory::parse_time_zone(&format!("{path}.capacity.time_zone"), &c.time_zone)
    {
        errs.errors.extend(v.errors);
    }
    match c.per_member {
        Some(p) if bad_cap(p) => errs.push(
            format!("{path}.capacity.per_member"),
            format!("must be 1 to {MAX_CAPACITY}"),
        ),
        None if users.iter().all(|m| m.capacity.is_none()) => errs.push(
            format!("{path}.capacity.per_member"),
            "is required when no member has a capacity of their own",
        ),
        _ => {}
    }
}

/// A notification's `to_field`: a reference of the trigger's kind to a user or a contact
/// (or `id` of a contact), and no chat to a contact.
fn check_recipient_field(
    errs: &mut ValidationErrors,
    path: &str,
    d: Option<&KindDescription>,
    field: &str,
    channel: crate::model::Channel,
) {
    let p = format!("{path}.to_field");
    let Some(d) = d else {
        errs.push(p, "needs a trigger on a record kind");
        return;
    };
    let to = match d.get(field).map(|f| &f.ty) {
        Some(FieldType::Id) if field == "id" && d.kind == RecordKind::CONTACT => {
            RecordKind::CONTACT
        }
        Some(FieldType::Reference(to)) if *to == RecordKind::USER || *to == RecordKind::CONTACT => {
            to.clone()
        }
        _ => {
            errs.push(
                p,
                format!(
                    "{field:?} is not a field of a {} that names a user or a contact",
                    d.kind
                ),
            );
            return;
        }
    };
    if to == RecordKind::CONTACT && channel == crate::model::Channel::Chat {
        errs.push(
            format!("{path}.channel"),
            "chat notifications go to users only (a contact gets email or sms)",
        );
    }
}

/// Checks the placeholders of every string in a custom action's parameters (the engine
/// renders each as a template over the record), naming it by its path
/// (`actions[0].params.title`, `actions[0].params.lines[1]`).
fn check_param_templates(
    errs: &mut ValidationErrors,
    d: Option<&KindDescription>,
    path: &str,
    v: &Json,
) {
    match v {
        Json::String(s) if s.contains("{{") => check_template(errs, d, path, s),
        Json::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_param_templates(errs, d, &format!("{path}[{i}]"), item);
            }
        }
        Json::Object(m) => {
            for (k, item) in m {
                check_param_templates(errs, d, &format!("{path}.{k}"), item);
            }
        }
        _ => {}
    }
}
