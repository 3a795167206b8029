//! Templates: `{{field}}` placeholders over a record's JSON fields (`{{custom.<key>}}` for
//! custom values), rendered when a rule runs. Saving a rule refuses unknown placeholders,
//! so rendering only meets fields the kind has.

use serde_json::Value as Json;

/// A field's value at `path` (`name` or `custom.<key>`) of a record.
pub(crate) fn field<'a>(record: &'a Json, path: &str) -> Option<&'a Json> {
    match path.strip_prefix("custom.") {
        Some(key) => record.get("custom").and_then(|c| c.get(key)),
        None => record.get(path),
    }
}

/// A value as text in a rendered template: text as it is, numbers and booleans as
/// written, no value as nothing, money as `<amount> <currency>`, lists joined by `, `,
/// anything else as its JSON.
pub(crate) fn text_of(v: &Json) -> String {
    match v {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        Json::Array(items) => items.iter().map(text_of).collect::<Vec<_>>().join(", "),
        Json::Object(m) => match (m.get("amount"), m.get("currency")) {
            (Some(a), Some(Json::String(c))) if m.len() == 2 => format!("{} {c}", text_of(a)),
            _ => v.to_string(),
        },
    }
}

/// Renders `template` over `record`: each `{{name}}` (spaces inside the braces ignored)
/// becomes the field's value as text ([`text_of`]); a field the record does not have
/// renders as nothing, and a `{{` without its `}}` stays as it is.
pub(crate) fn render(template: &str, record: &Json) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else {
            break;
        };
        out.push_str(&rest[..i]);
        if let Some(v) = field(record, after[..j].trim()) {
            out.push_str(&text_of(v));
        }
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_fields() {
        let r = json!({"title": "Big deal", "amount": {"amount": "12.50", "currency": "EUR"},
                       "tags": ["a", "b"], "custom": {"tier": "gold"}, "closed": null});
        assert_eq!(
            render(
                "{{title}}: {{ amount }} [{{tags}}] {{custom.tier}}{{closed}}!",
                &r
            ),
            "Big deal: 12.50 EUR [a, b] gold!"
        );
        assert_eq!(render("no {{ end", &r), "no {{ end");
        assert_eq!(render("{{missing}}x", &r), "x");
    }
}
