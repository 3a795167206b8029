//! Input validation of people and companies: one set of rules for contacts,
//! organizations and every module with similar fields (leads use it too).

use std::collections::BTreeSet;

use crmkit_core::text::{check_text, parse_email, parse_phone};
use crmkit_core::{Error, Result, ValidationErrors};

use crate::model::{Consent, EmailAddress, EmailInput, Phone, PhoneInput, PostalAddress};

/// Most emails or phones one record may have.
pub const MAX_CONTACT_POINTS: usize = 10;
/// Most tags one record may have.
pub const MAX_TAGS: usize = 50;

/// First and last name: each at most 100 characters; at least one not blank.
pub fn names(errs: &mut ValidationErrors, first: &str, last: &str) {
    errs.check(check_text("first_name", first, 100, false));
    errs.check(check_text("last_name", last, 100, false));
    if first.trim().is_empty() && last.trim().is_empty() {
        errs.push(
            "first_name",
            "needs a first or last name that is not empty or whitespace only",
        );
    } else {
        for (field, v) in [("first_name", first), ("last_name", last)] {
            if !v.is_empty() && v.trim().is_empty() {
                errs.push(field, "must not be whitespace only");
            }
        }
    }
}

/// Emails (at most [`MAX_CONTACT_POINTS`], no repeats): the validated addresses and their
/// match keys.
pub fn emails(
    errs: &mut ValidationErrors,
    input: &[EmailInput],
) -> (Vec<EmailAddress>, Vec<String>) {
    if input.len() > MAX_CONTACT_POINTS {
        errs.push("emails", format!("at most {MAX_CONTACT_POINTS} emails"));
        return (vec![], vec![]);
    }
    let mut out = vec![];
    let mut keys = vec![];
    for (i, e) in input.iter().enumerate() {
        let label_ok = match &e.label {
            Some(l) => errs
                .check(check_text(&format!("emails[{i}].label"), l, 32, false))
                .is_some(),
            None => true,
        };
        match parse_email(&format!("emails[{i}]"), &e.address) {
            Ok(_) if !label_ok => {}
            Ok(p) => {
                if keys.contains(&p.key) {
                    errs.push(format!("emails[{i}]"), "is listed twice");
                } else {
                    keys.push(p.key);
                    out.push(EmailAddress {
                        address: p.address,
                        label: e.label.clone(),
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

/// One phone number, normalised to E.164.
pub fn phone(errs: &mut ValidationErrors, field: &str, p: &PhoneInput) -> Option<Phone> {
    if let Some(l) = &p.label {
        errs.check(check_text(&format!("{field}.label"), l, 32, false));
    }
    errs.check(parse_phone(field, &p.number, p.region.as_deref()))
        .map(|number| Phone {
            number,
            label: p.label.clone(),
        })
}

/// Phone numbers (at most [`MAX_CONTACT_POINTS`], no repeats), normalised to E.164.
pub fn phones(errs: &mut ValidationErrors, input: &[PhoneInput]) -> Vec<Phone> {
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

/// Tags: at most [`MAX_TAGS`], each 1 to 50 characters, no repeats.
pub fn tags(errs: &mut ValidationErrors, input: &[String]) {
    if input.len() > MAX_TAGS {
        errs.push("tags", format!("at most {MAX_TAGS} tags"));
        return;
    }
    let mut seen = BTreeSet::new();
    for (i, t) in input.iter().enumerate() {
        let field = format!("tags[{i}]");
        if errs.check(check_text(&field, t, 50, true)).is_some() && !seen.insert(t) {
            errs.push(field, "is listed twice");
        }
    }
}

/// An optional text field: when present, not blank and at most `max` characters.
pub fn opt_text(errs: &mut ValidationErrors, field: &str, v: &Option<String>, max: usize) {
    if let Some(v) = v {
        errs.check(check_text(field, v, max, true));
    }
}

/// Marketing consent: its source at most 100 characters.
pub fn consent(errs: &mut ValidationErrors, c: &Consent) {
    opt_text(errs, "consent.source", &c.source, 100);
}

/// A postal address: each line at most 200 characters.
pub fn address(errs: &mut ValidationErrors, a: &PostalAddress) {
    for (f, v) in [
        ("address.street", &a.street),
        ("address.city", &a.city),
        ("address.region", &a.region),
        ("address.postal_code", &a.postal_code),
        ("address.country", &a.country),
    ] {
        opt_text(errs, f, v, 200);
    }
}

/// Normalises a web domain: trims, lowercases, strips a URL's scheme, path and `www.`.
/// Only ASCII domains (IDNs in their `xn--` form) are accepted.
pub fn domain(field: &str, s: &str) -> Result<String> {
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

/// A website: an http or https URL without spaces, at most 500 characters.
pub fn website(errs: &mut ValidationErrors, w: &str) {
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
