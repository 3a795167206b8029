//! Input validation of leads: the same rules as contacts' (crmkit-contacts keeps its
//! validation private, so the rules are repeated here and must stay in step with it).

use crmkit_contacts::{EmailAddress, MAX_CONTACT_POINTS, Phone, PhoneInput};
use crmkit_core::text::{check_text, parse_email, parse_phone};
use crmkit_core::{Error, Result, ValidationErrors};

pub(crate) fn names(errs: &mut ValidationErrors, first: &str, last: &str) {
    errs.check(check_text("first_name", first, 100, false));
    errs.check(check_text("last_name", last, 100, false));
    if first.trim().is_empty() && last.trim().is_empty() {
        errs.push(
            "first_name",
            "a lead needs a first or last name that is not empty or whitespace only",
        );
    } else {
        for (field, v) in [("first_name", first), ("last_name", last)] {
            if !v.is_empty() && v.trim().is_empty() {
                errs.push(field, "must not be whitespace only");
            }
        }
    }
}

/// Validated emails and their match keys.
pub(crate) fn emails(
    errs: &mut ValidationErrors,
    input: &[String],
) -> (Vec<EmailAddress>, Vec<String>) {
    if input.len() > MAX_CONTACT_POINTS {
        errs.push("emails", format!("at most {MAX_CONTACT_POINTS} emails"));
        return (vec![], vec![]);
    }
    let mut out = vec![];
    let mut keys = vec![];
    for (i, e) in input.iter().enumerate() {
        match parse_email(&format!("emails[{i}]"), e) {
            Ok(p) => {
                if keys.contains(&p.key) {
                    errs.push(format!("emails[{i}]"), "is listed twice");
                } else {
                    keys.push(p.key);
                    out.push(EmailAddress {
                        address: p.address,
                        label: None,
                    });
                }
            }
            Err(e) => {
                errs.check::<()>(Err(e));
            }
        }
    }
    (out, keys)
}

pub(crate) fn phone(errs: &mut ValidationErrors, field: &str, p: &PhoneInput) -> Option<Phone> {
    if let Some(l) = &p.label {
        errs.check(check_text(&format!("{field}.label"), l, 32, false));
    }
    errs.check(parse_phone(field, &p.number, p.region.as_deref()))
        .map(|number| Phone {
            number,
            label: p.label.clone(),
        })
}

pub(crate) fn phones(errs: &mut ValidationErrors, input: &[PhoneInput]) -> Vec<Phone> {
    if input.len() > MAX_CONTACT_POINTS {
        errs.push("phones", format!("at most {MAX_CONTACT_POINTS} phones"));
        return vec![];
    }
    let mut out: Vec<Phone> = vec![];
    for (i, p) in input.iter().enumerate() {
        if let Some(p) = phone(errs, &format!("phones[{i}]"), p) {
            if out.iter().any(|o| o.number == p.number) {
                errs.push(format!("phones[{i}]"), "is listed twice");
            } else {
                out.push(p);
            }
        }
    }
    out
}

pub(crate) fn opt_text(errs: &mut ValidationErrors, field: &str, v: &Option<String>, max: usize) {
    if let Some(v) = v {
        errs.check(check_text(field, v, max, true));
    }
}

/// Normalises a web domain: trims, lowercases, strips a URL's scheme, path and `www.`.
/// Only ASCII domains (IDNs in their `xn--` form) are accepted.
pub(crate) fn domain(field: &str, s: &str) -> Result<String> {
    let mut d = s.trim().to_ascii_lowercase();
    for scheme in ["https://", "http://"] {
        if let Some(rest) = d.strip_prefix(scheme) {
            d = rest.to_owned();
        }
    }
    if let Some(i) = d.find('/') {
        d.truncate(i);
    }
    if let Some(rest) = d.strip_prefix("www.") {
        d = rest.to_owned();
    }
    let labels_ok = d.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if d.len() > 253 || !d.contains('.') || !labels_ok {
        return Err(Error::validation(
            field,
            format!("{s:?} is not a domain name (IDNs in xn-- form)"),
        ));
    }
    Ok(d)
}

pub(crate) fn website(errs: &mut ValidationErrors, w: &str) {
    if errs.check(check_text("website", w, 500, true)).is_none() {
        return;
    }
    let lower = w.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://"))
        || w.chars().any(char::is_whitespace)
    {
        errs.push("website", "must be an http or https URL without spaces");
    }
}
