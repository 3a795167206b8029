//! The pure condition evaluator: whether a rule's [`Conditions`] hold for a record (its
//! JSON, as the generic record API reads it) and the change that triggered the rule, and
//! why. No IO; the dry run of conditions.
//!
//! ## What a filter means on a record
//!
//! The filter is the query AST ([`Filter`]) over the record's JSON field names
//! (`custom.<key>` for custom values), and it means what a list query means:
//!
//! - Logic is three-valued, as in SQL: comparing a field that has no value (absent or
//!   `null`) is *unknown*; `and`, `or` and `not` combine unknowns as SQL does
//!   (`not unknown` is unknown); a condition holds only when it is *true*. `ne` on a
//!   missing value is unknown, not true; use `is_null`.
//! - `in` with an empty list is false; `contains` and `starts_with` compare text case-
//!   insensitively (folded, [`crmkit_core::text::fold`]).
//! - Money fields compare their amount; decimals compare exactly; timestamps as instants;
//!   dates as dates; ids as UUIDs.
//! - A custom field without a value makes a comparison *false* (not unknown), as the
//!   query's "has a value that..." does; a multi-choice value matches when any choice
//!   does.
//! - A value of a type the field does not have (text against a number) is false; saving
//!   a rule refuses such filters, so this only matters for unsaved rules.

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, Utc};
use crmkit_core::Filter;
use crmkit_core::query::{CmpOpName, FieldValue};
use crmkit_core::text::fold;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use uuid::Uuid;

use crate::model::{ChangePredicate, Conditions};

/// What changed in the event that triggered a rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The changed fields (JSON field names; `custom.<key>` or `custom` for custom
    /// values), as an event's `changed` lists them.
    pub fields: Vec<String>,
    /// The record before the change, when known (for `from` predicates).
    pub before: Option<Json>,
}

impl Change {
    /// The change between two versions of a record: every top-level field that differs
    /// (`updated_at` and `version` left out), and `custom.<key>` for each custom value
    /// that differs.
    pub fn between(before: &Json, after: &Json) -> Change {
        let mut fields = vec![];
        let empty = serde_json::Map::new();
        let b = before.as_object().unwrap_or(&empty);
        let a = after.as_object().unwrap_or(&empty);
        let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            if k == "updated_at" || k == "version" {
                continue;
            }
            let (x, y) = (b.get(k.as_str()), a.get(k.as_str()));
            if x == y {
                continue;
            }
            fields.push(k.clone());
            if k == "custom" {
                let ex = serde_json::Map::new();
                let cx = x.and_then(Json::as_object).unwrap_or(&ex);
                let cy = y.and_then(Json::as_object).unwrap_or(&ex);
                let mut ck: Vec<&String> = cx.keys().chain(cy.keys()).collect();
                ck.sort();
                ck.dedup();
                for c in ck {
                    if cx.get(c.as_str()) != cy.get(c.as_str()) {
                        fields.push(format!("custom.{c}"));
                    }
                }
            }
        }
        Change {
            fields,
            before: Some(before.clone()),
        }
    }
}

/// How one condition came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It held.
    Held,
    /// It did not hold.
    Failed,
    /// It could not be decided (a missing value); it does not hold.
    Unknown,
}

impl Outcome {
    fn of(v: Option<bool>) -> Outcome {
        match v {
            Some(true) => Outcome::Held,
            Some(false) => Outcome::Failed,
            None => Outcome::Unknown,
        }
    }
}

/// One condition's result and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Where in the rule (`conditions.filter`, `conditions.filter.and[1]`,
    /// `conditions.changes[0]`).
    pub path: String,
    /// How it came out.
    pub outcome: Outcome,
    /// Why, in words.
    pub reason: String,
}

/// Whether a rule's conditions hold, and each condition's result (leaves of the filter
/// and each change predicate, in order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// Whether the conditions hold (the filter is true and every change predicate holds).
    pub holds: bool,
    /// Each condition, in order.
    pub steps: Vec<Step>,
}

/// Evaluates `conditions` on `record` (its JSON) and `change` (what changed; `None` when
/// the rule was not started by a change, such as a schedule: change predicates then do
/// not hold). Pure: the dry run of a rule's conditions.
pub fn evaluate_conditions(
    conditions: &Conditions,
    record: &Json,
    change: Option<&Change>,
) -> Explanation {
    let mut steps = vec![];
    let mut holds = true;
    if let Some(f) = &conditions.filter {
        let v = eval_filter(f, record, "conditions.filter", &mut steps);
        holds &= v == Some(true);
    }
    for (i, p) in conditions.changes.iter().enumerate() {
        let (ok, reason) = change_holds(p, record, change);
        holds &= ok;
        steps.push(Step {
            path: format!("conditions.changes[{i}]"),
            outcome: if ok { Outcome::Held } else { Outcome::Failed },
            reason,
        });
    }
    Explanation { holds, steps }
}

/// The value of `field` in a record's JSON (`custom.<key>`: the custom value's own
/// value), or `None` when absent or null.
pub fn field_value<'a>(record: &'a Json, field: &str) -> Option<&'a Json> {
    let v = match field.strip_prefix("custom.") {
        Some(key) => {
            let cv = record.get("custom")?.get(key)?;
            // Custom values are `{"type": .., "value": ..}`.
            cv.get("value").unwrap_or(cv)
        }
        None => record.get(field)?,
    };
    (!v.is_null()).then_some(v)
}

fn show(v: Option<&Json>) -> String {
    match v {
        None => "no value".into(),
        Some(v) => v.to_string(),
    }
}

/// Whether a change predicate holds, and why.
fn change_holds(p: &ChangePredicate, record: &Json, change: Option<&Change>) -> (bool, String) {
    let Some(change) = change else {
        return (false, "no change started the rule".into());
    };
    let changed = change.fields.iter().any(|f| {
        f == &p.field
            || (p.field.starts_with("custom.") && f == "custom" && {
                // A change naming only `custom` changed this key if its values differ.
                let before = change
                    .before
                    .as_ref()
                    .and_then(|b| field_value(b, &p.field));
                before != field_value(record, &p.field)
            })
    });
    if !changed {
        return (false, format!("{} did not change", p.field));
    }
    if let Some(from) = &p.from {
        let before = change
            .before
            .as_ref()
            .and_then(|b| field_value(b, &p.field));
        if before != from.as_ref().filter(|v| !v.is_null()) {
            return (
                false,
                format!(
                    "{} changed from {}, not from {}",
                    p.field,
                    show(before),
                    show(from.as_ref())
                ),
            );
        }
    }
    let now = field_value(record, &p.field);
    if let Some(to) = &p.to
        && now != to.as_ref().filter(|v| !v.is_null())
    {
        return (
            false,
            format!(
                "{} changed to {}, not to {}",
                p.field,
                show(now),
                show(to.as_ref())
            ),
        );
    }
    (true, format!("{} changed to {}", p.field, show(now)))
}

fn op_name(op: CmpOpName) -> &'static str {
    match op {
        CmpOpName::Eq => "=",
        CmpOpName::Ne => "<>",
        CmpOpName::Lt => "<",
        CmpOpName::Lte => "<=",
        CmpOpName::Gt => ">",
        CmpOpName::Gte => ">=",
    }
}

fn and3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

fn or3(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    }
}

/// The values a field offers for comparison: one for a plain value, each choice of a
/// multi-choice custom value.
fn candidates(v: &Json) -> Vec<&Json> {
    match v {
        Json::Array(items) => items.iter().collect(),
        v => vec![v],
    }
}

/// Compares a record's JSON value with a filter value: `None` when they are not of
/// comparable types.
fn compare(j: &Json, v: &FieldValue) -> Option<Ordering> {
    match v {
        FieldValue::Null => None,
        FieldValue::Bool(b) => j.as_bool().map(|x| x.cmp(b)),
        FieldValue::Int(i) => decimal_of(j).map(|x| x.cmp(&Decimal::from(*i))),
        FieldValue::Decimal(d) => decimal_of(j).map(|x| x.cmp(d)),
        FieldValue::Text(t) => {
            let s = j.as_str()?;
            // A text filter value on an id, date or timestamp field compares in that type.
            if let (Ok(a), Ok(b)) = (Uuid::parse_str(s), Uuid::parse_str(t)) {
                return Some(a.cmp(&b));
            }
            if let (Ok(a), Ok(b)) = (
                DateTime::parse_from_rfc3339(s),
                DateTime::parse_from_rfc3339(t),
            ) {
                return Some(a.cmp(&b));
            }
            Some(s.cmp(t.as_str()))
        }
        FieldValue::Uuid(u) => j
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .map(|x| x.cmp(u)),
        FieldValue::Date(d) => j
            .as_str()
            .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            .map(|x| x.cmp(d)),
        FieldValue::Timestamp(t) => j
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|x| x.with_timezone(&Utc).cmp(t)),
    }
}

/// A JSON number, decimal string, or money object's amount, as a decimal.
fn decimal_of(j: &Json) -> Option<Decimal> {
    match j {
        Json::Number(n) => n
            .as_i64()
            .map(Decimal::from)
            .or_else(|| Decimal::from_str_exact(&n.to_string()).ok()),
        Json::String(s) => Decimal::from_str_exact(s.trim()).ok(),
        Json::Object(m) => m.get("amount").and_then(decimal_of),
        _ => None,
    }
}

fn holds(op: CmpOpName, o: Ordering) -> bool {
    match op {
        CmpOpName::Eq => o.is_eq(),
        CmpOpName::Ne => o.is_ne(),
        CmpOpName::Lt => o.is_lt(),
        CmpOpName::Lte => o.is_le(),
        CmpOpName::Gt => o.is_gt(),
        CmpOpName::Gte => o.is_ge(),
    }
}

/// A leaf on a field: `None` (unknown) when a built-in field has no value, false when a
/// custom one has none; else whether any of the field's values satisfies `test`.
fn leaf(record: &Json, name: &str, test: impl Fn(&Json) -> bool) -> Option<bool> {
    match field_value(record, name) {
        None if name.starts_with("custom.") => Some(false),
        None => None,
        Some(v) => Some(candidates(v).into_iter().any(test)),
    }
}

fn eval_filter(f: &Filter, record: &Json, path: &str, steps: &mut Vec<Step>) -> Option<bool> {
    let mut push = |v: Option<bool>, reason: String| {
        steps.push(Step {
            path: path.to_owned(),
            outcome: Outcome::of(v),
            reason,
        });
        v
    };
    match f {
        Filter::And(fs) => {
            let mut acc = Some(true);
            for (i, f) in fs.iter().enumerate() {
                acc = and3(
                    acc,
                    eval_filter(f, record, &format!("{path}.and[{i}]"), steps),
                );
            }
            acc
        }
        Filter::Or(fs) => {
            let mut acc = Some(false);
            for (i, f) in fs.iter().enumerate() {
                acc = or3(
                    acc,
                    eval_filter(f, record, &format!("{path}.or[{i}]"), steps),
                );
            }
            acc
        }
        Filter::Not(f) => eval_filter(f, record, &format!("{path}.not"), steps).map(|b| !b),
        Filter::Cmp(name, op, v) => {
            let r = if *v == FieldValue::Null {
                None
            } else {
                leaf(record, name, |j| {
                    compare(j, v).is_some_and(|o| holds(*op, o))
                })
            };
            let now = show(field_value(record, name));
            push(
                r,
                format!(
                    "{name} is {now}; {} {v:?} is {:?}",
                    op_name(*op),
                    Outcome::of(r)
                ),
            )
        }
        Filter::In(name, vs) => {
            let r = if vs.is_empty() {
                Some(false)
            } else {
                let any_null = vs.contains(&FieldValue::Null);
                match leaf(record, name, |j| {
                    vs.iter()
                        .any(|v| compare(j, v).is_some_and(Ordering::is_eq))
                }) {
                    Some(false) if any_null && !name.starts_with("custom.") => None,
                    other => other,
                }
            };
            let now = show(field_value(record, name));
            push(
                r,
                format!("{name} is {now}; in {vs:?} is {:?}", Outcome::of(r)),
            )
        }
        Filter::IsNull(name) => {
            let r = Some(field_value(record, name).is_none());
            let now = show(field_value(record, name));
            push(
                r,
                format!("{name} is {now}; is_null is {:?}", Outcome::of(r)),
            )
        }
        Filter::Contains(name, t) | Filter::StartsWith(name, t) => {
            let needle = fold(t);
            let starts = matches!(f, Filter::StartsWith(..));
            let r = leaf(record, name, |j| {
                j.as_str().is_some_and(|s| {
                    let s = fold(s);
                    if starts {
                        s.starts_with(&needle)
                    } else {
                        s.contains(&needle)
                    }
                })
            });
            let what = if starts { "starts_with" } else { "contains" };
            let now = show(field_value(record, name));
            push(
                r,
                format!("{name} is {now}; {what} {t:?} is {:?}", Outcome::of(r)),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn holds_on(f: Filter, record: Json) -> bool {
        evaluate_conditions(
            &Conditions {
                filter: Some(f),
                changes: vec![],
            },
            &record,
            None,
        )
        .holds
    }

    #[test]
    fn fields_compare_in_their_types() {
        let r = json!({
            "title": "Mainframe",
            "amount": {"amount": "125000.50", "currency": "EUR"},
            "expected_close": "2031-03-31",
            "created_at": "2030-01-01T10:00:00Z",
            "owner": "0190a0a0-0000-7000-8000-000000000001",
            "score": 7,
            "custom": {"tier": {"type": "choice", "value": "gold"},
                       "tags": {"type": "choices", "value": ["a", "b"]}},
        });
        let d = |s: &str| Decimal::from_str_exact(s).unwrap();
        assert!(holds_on(Filter::gt("amount", d("125000.49")), r.clone()));
        assert!(!holds_on(Filter::gt("amount", d("125000.5")), r.clone()));
        assert!(holds_on(
            Filter::lt(
                "expected_close",
                NaiveDate::from_ymd_opt(2031, 4, 1).unwrap()
            ),
            r.clone()
        ));
        assert!(holds_on(
            Filter::eq(
                "created_at",
                "2030-01-01T11:00:00+01:00"
                    .parse::<DateTime<Utc>>()
                    .unwrap()
            ),
            r.clone()
        ));
        assert!(holds_on(
            Filter::eq(
                "owner",
                Uuid::parse_str("0190a0a0-0000-7000-8000-000000000001").unwrap()
            ),
            r.clone()
        ));
        assert!(holds_on(Filter::gte("score", 7i64), r.clone()));
        assert!(holds_on(Filter::contains("title", "FRAME"), r.clone()));
        assert!(holds_on(Filter::starts_with("title", "main"), r.clone()));
        assert!(holds_on(Filter::eq("custom.tier", "gold"), r.clone()));
        assert!(holds_on(Filter::eq("custom.tags", "b"), r.clone()));
        // A missing custom value is false, so its negation holds...
        assert!(holds_on(Filter::eq("custom.nope", "x").not(), r.clone()));
        // ... while a missing built-in value is unknown, and so is its negation.
        assert!(!holds_on(Filter::eq("next_step", "x").not(), r.clone()));
        assert!(!holds_on(Filter::ne("next_step", "x"), r.clone()));
        assert!(holds_on(Filter::is_null("next_step"), r.clone()));
        assert!(!holds_on(Filter::In("title".into(), vec![]), r));
    }

    #[test]
    fn change_predicates_and_explanations() {
        let before = json!({"status": "open", "title": "A", "custom": {"tier": {"type": "choice", "value": "gold"}}});
        let after = json!({"status": "won", "title": "A", "custom": {"tier": {"type": "choice", "value": "silver"}}});
        let change = Change::between(&before, &after);
        assert_eq!(change.fields, ["custom", "custom.tier", "status"]);
        let c = Conditions {
            filter: Some(Filter::eq("title", "A").and(Filter::eq("status", "won"))),
            changes: vec![
                ChangePredicate::changed("status")
                    .from(json!("open"))
                    .to(json!("won")),
                ChangePredicate::changed("custom.tier").to(json!("silver")),
            ],
        };
        let e = evaluate_conditions(&c, &after, Some(&change));
        assert!(e.holds, "{e:?}");
        assert_eq!(e.steps.len(), 4);
        assert_eq!(e.steps[0].path, "conditions.filter.and[0]");
        let c = Conditions {
            filter: None,
            changes: vec![ChangePredicate::changed("status").from(json!("lost"))],
        };
        let e = evaluate_conditions(&c, &after, Some(&change));
        assert!(!e.holds);
        assert_eq!(e.steps[0].outcome, Outcome::Failed);
        assert!(
            e.steps[0].reason.contains("not from \"lost\""),
            "{}",
            e.steps[0].reason
        );
        assert!(!evaluate_conditions(&c, &after, None).holds);
        let c = Conditions {
            filter: None,
            changes: vec![ChangePredicate::changed("title")],
        };
        assert!(!evaluate_conditions(&c, &after, Some(&change)).holds);
        assert!(evaluate_conditions(&Conditions::default(), &after, None).holds);
    }

    // --- property: the evaluator against a brute-force oracle -------------------------

    /// A generated record: an int `n`, a text `s`, a bool `b` (each maybe absent) and a
    /// custom choice `custom.c` (maybe absent).
    #[derive(Debug, Clone)]
    struct Rec {
        n: Option<i64>,
        s: Option<String>,
        b: Option<bool>,
        c: Option<String>,
    }

    impl Rec {
        fn json(&self) -> Json {
            let mut m = serde_json::Map::new();
            if let Some(n) = self.n {
                m.insert("n".into(), json!(n));
            } else {
                m.insert("n".into(), Json::Null);
            }
            if let Some(s) = &self.s {
                m.insert("s".into(), json!(s));
            }
            if let Some(b) = self.b {
                m.insert("b".into(), json!(b));
            }
            let mut custom = serde_json::Map::new();
            if let Some(c) = &self.c {
                custom.insert("c".into(), json!({"type": "choice", "value": c}));
            }
            m.insert("custom".into(), Json::Object(custom));
            Json::Object(m)
        }
    }

    fn rec() -> impl Strategy<Value = Rec> {
        (
            proptest::option::of(-3i64..3),
            proptest::option::of(prop_oneof!["", "a", "Ab", "ba", "B"].prop_map(String::from)),
            proptest::option::of(any::<bool>()),
            proptest::option::of(prop_oneof!["x", "y"].prop_map(String::from)),
        )
            .prop_map(|(n, s, b, c)| Rec { n, s, b, c })
    }

    fn op() -> impl Strategy<Value = CmpOpName> {
        prop_oneof![
            Just(CmpOpName::Eq),
            Just(CmpOpName::Ne),
            Just(CmpOpName::Lt),
            Just(CmpOpName::Lte),
            Just(CmpOpName::Gt),
            Just(CmpOpName::Gte),
        ]
    }

    fn leaf_filter() -> impl Strategy<Value = Filter> {
        let text = prop_oneof!["", "a", "A", "b", "ab"].prop_map(String::from);
        prop_oneof![
            (op(), -3i64..3).prop_map(|(o, v)| Filter::Cmp("n".into(), o, FieldValue::Int(v))),
            (op(), text.clone()).prop_map(|(o, v)| Filter::Cmp("s".into(), o, FieldValue::Text(v))),
            (op(), any::<bool>()).prop_map(|(o, v)| Filter::Cmp(
                "b".into(),
                o,
                FieldValue::Bool(v)
            )),
            (op(), prop_oneof!["x", "y"]).prop_map(|(o, v)| Filter::Cmp(
                "custom.c".into(),
                o,
                FieldValue::Text(v)
            )),
            proptest::collection::vec(-3i64..3, 0..3).prop_map(|vs| Filter::In(
                "n".into(),
                vs.into_iter().map(FieldValue::Int).collect()
            )),
            prop_oneof![Just("n"), Just("s"), Just("b"), Just("custom.c")]
                .prop_map(|f| Filter::IsNull(f.into())),
            text.clone().prop_map(|t| Filter::Contains("s".into(), t)),
            text.prop_map(|t| Filter::StartsWith("s".into(), t)),
        ]
    }

    fn filter() -> impl Strategy<Value = Filter> {
        leaf_filter().prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Filter::And),
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Filter::Or),
                inner.prop_map(|f| Filter::Not(Box::new(f))),
            ]
        })
    }

    /// The oracle: SQL's three-valued logic written out over the typed record, with the
    /// rules of the module docs.
    fn oracle(f: &Filter, r: &Rec) -> Option<bool> {
        let cmp = |o: CmpOpName, ord: Ordering| match o {
            CmpOpName::Eq => ord == Ordering::Equal,
            CmpOpName::Ne => ord != Ordering::Equal,
            CmpOpName::Lt => ord == Ordering::Less,
            CmpOpName::Lte => ord != Ordering::Greater,
            CmpOpName::Gt => ord == Ordering::Greater,
            CmpOpName::Gte => ord != Ordering::Less,
        };
        match f {
            Filter::And(fs) => {
                let vs: Vec<_> = fs.iter().map(|f| oracle(f, r)).collect();
                if vs.contains(&Some(false)) {
                    Some(false)
                } else if vs.contains(&None) {
                    None
                } else {
                    Some(true)
                }
            }
            Filter::Or(fs) => {
                let vs: Vec<_> = fs.iter().map(|f| oracle(f, r)).collect();
                if vs.contains(&Some(true)) {
                    Some(true)
                } else if vs.contains(&None) {
                    None
                } else {
                    Some(false)
                }
            }
            Filter::Not(f) => oracle(f, r).map(|b| !b),
            Filter::Cmp(name, o, v) => match (name.as_str(), v) {
                ("n", FieldValue::Int(x)) => r.n.map(|n| cmp(*o, n.cmp(x))),
                ("s", FieldValue::Text(x)) => r.s.as_ref().map(|s| cmp(*o, s.as_str().cmp(x))),
                ("b", FieldValue::Bool(x)) => r.b.map(|b| cmp(*o, b.cmp(x))),
                ("custom.c", FieldValue::Text(x)) => {
                    Some(r.c.as_ref().is_some_and(|c| cmp(*o, c.as_str().cmp(x))))
                }
                _ => unreachable!(),
            },
            Filter::In(_, vs) => {
                if vs.is_empty() {
                    Some(false)
                } else {
                    r.n.map(|n| vs.contains(&FieldValue::Int(n)))
                }
            }
            Filter::IsNull(name) => Some(match name.as_str() {
                "n" => r.n.is_none(),
                "s" => r.s.is_none(),
                "b" => r.b.is_none(),
                _ => r.c.is_none(),
            }),
            Filter::Contains(_, t) => {
                r.s.as_ref()
                    .map(|s| s.to_lowercase().contains(&t.to_lowercase()))
            }
            Filter::StartsWith(_, t) => {
                r.s.as_ref()
                    .map(|s| s.to_lowercase().starts_with(&t.to_lowercase()))
            }
        }
    }

    proptest! {
        #[test]
        fn filters_mean_what_the_oracle_says(f in filter(), records in proptest::collection::vec(rec(), 1..8)) {
            for r in &records {
                let want = oracle(&f, r) == Some(true);
                prop_assert_eq!(holds_on(f.clone(), r.json()), want, "{:?} on {:?}", f, r);
            }
        }

        #[test]
        fn a_negated_filter_never_holds_with_it(f in filter(), r in rec()) {
            let j = r.json();
            prop_assert!(!(holds_on(f.clone(), j.clone()) && holds_on(f.not(), j)));
        }
    }
}
