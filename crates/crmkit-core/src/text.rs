//! Text rules shared by every module: length limits, case folding, dates, and the
//! normalisation of email addresses and phone numbers.
//!
//! Policy (documented in the README):
//! - Text is stored byte-exact. NUL characters are refused everywhere (PostgreSQL cannot
//!   store them, so no backend does). Lengths are counted in Unicode scalar values.
//! - Case-insensitive search compares [`fold`]ed text: Unicode lowercase, no other
//!   normalisation (NFC and NFD forms of one word are different text).
//! - Emails are validated (RFC 5321/5322 through the `email_address` crate), stored as
//!   given (trimmed), and matched on a key that lowercases the whole address.
//!   Plus-addressing is kept; a trailing dot in the domain is refused.
//! - Phones are parsed with the `phonenumber` crate (a port of libphonenumber) and stored in
//!   E.164; a number without a country code needs a default region. A number with an
//!   extension is refused (a Validation error), never stored without it.

use chrono::{Datelike, NaiveDate};

use crate::error::{Error, Result};

/// Case-folds text for case-insensitive comparison.
pub fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// Checks a text field: no NUL, at most `max` characters, and (if `required`) not empty or
/// whitespace only.
pub fn check_text(field: &str, s: &str, max: usize, required: bool) -> Result<()> {
    if s.contains('\0') {
        return Err(Error::validation(field, "contains a NUL character"));
    }
    if required && s.trim().is_empty() {
        return Err(Error::validation(
            field,
            "must not be empty or whitespace only",
        ));
    }
    let n = s.chars().count();
    if n > max {
        return Err(Error::validation(
            field,
            format!("is {n} characters long; the maximum is {max}"),
        ));
    }
    Ok(())
}

/// Checks that a date is within the years 1 to 9999, the supported range of calendar
/// dates everywhere (stored dates, date filters on built-in and custom fields, and the
/// storage contract's `Date` cells): dates are stored as `YYYY-MM-DD` text, and text order
/// is date order only for four-digit years (`"10000-01-01"` sorts before `"9999-12-31"`,
/// and `"-0001-01-01"` before `"-0005-01-01"`).
pub fn check_date(d: NaiveDate) -> std::result::Result<(), String> {
    if (1..=9999).contains(&d.year()) {
        Ok(())
    } else {
        Err("must be between the years 1 and 9999".into())
    }
}

/// Longest email address (RFC 5321 path limit).
pub const MAX_EMAIL: usize = 254;

/// A validated email: as given (trimmed) and its match key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// As given, trimmed.
    pub address: String,
    /// The lowercase key used for duplicate detection and lookup.
    pub key: String,
}

/// Validates and normalises an email address.
pub fn parse_email(field: &str, s: &str) -> Result<Email> {
    let t = s.trim();
    check_text(field, t, MAX_EMAIL, true)?;
    let invalid = || Error::validation(field, format!("{t:?} is not a valid email address"));
    if t.ends_with('.') || !t.contains('@') {
        return Err(invalid());
    }
    let parsed = email_address::EmailAddress::parse_with_options(
        t,
        email_address::Options::default().without_display_text(),
    )
    .map_err(|_| invalid())?;
    let domain = parsed.domain();
    if domain.ends_with('.') || !domain.contains('.') && !domain.starts_with('[') {
        return Err(invalid());
    }
    Ok(Email {
        address: t.to_owned(),
        key: fold(t),
    })
}

/// Validates a phone number and returns it in E.164 (`+4930123456`). A number without a
/// country code is read in `default_region` (ISO 3166 alpha-2, e.g. `DE`), if given.
///
/// A number with an extension (`+49 30 901820 ext. 12`, `x12`, `extension 12`) is a
/// Validation error naming `field` (forms the parser cannot read, such as `;ext=12`, are
/// refused as not a phone number): E.164 has no extension, and a stored number is both
/// what the record shows and its key in the phone lookup, so an extension would either be
/// dropped silently (as it once was) or make the number unfindable by its main number.
/// Callers keep an extension elsewhere (a phone's label, a note).
pub fn parse_phone(field: &str, s: &str, default_region: Option<&str>) -> Result<String> {
    check_text(field, s, 64, true)?;
    let region = match default_region {
        None => None,
        Some(r) => Some(
            r.trim()
                .to_ascii_uppercase()
                .parse::<phonenumber::country::Id>()
                .map_err(|_| {
                    Error::validation(field, format!("{r:?} is not a known region code"))
                })?,
        ),
    };
    let n = phonenumber::parse(region, s.trim()).map_err(|_| {
        Error::validation(
            field,
            if region.is_none() && !s.trim().starts_with('+') {
                format!("{s:?} has no country code and no default region was given")
            } else {
                format!("{s:?} is not a phone number")
            },
        )
    })?;
    if !phonenumber::is_valid(&n) {
        return Err(Error::validation(
            field,
            format!("{s:?} is not a valid phone number"),
        ));
    }
    if let Some(ext) = n.extension() {
        return Err(Error::validation(
            field,
            format!(
                "{s:?} has an extension ({}); extensions are not stored, give the main number \
                 and keep the extension in the label",
                &**ext
            ),
        ));
    }
    Ok(n.format().mode(phonenumber::Mode::E164).to_string())
}

/// A person's display name from its parts: "First Last", or the one part that is not
/// empty.
pub fn full_name(first: &str, last: &str) -> String {
    match (first.is_empty(), last.is_empty()) {
        (false, false) => format!("{first} {last}"),
        (false, true) => first.to_owned(),
        _ => last.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        let e = parse_email("email", " Ada.Lovelace+crm@Example.COM ").unwrap();
        assert_eq!(e.address, "Ada.Lovelace+crm@Example.COM");
        assert_eq!(e.key, "ada.lovelace+crm@example.com");
        for bad in ["", "   ", "no-at", "a@b.", "a@@b.com", "a@b\0.com", "x@y"] {
            assert!(parse_email("email", bad).is_err(), "{bad:?}");
        }
        assert!(parse_email("email", "\"quoted local\"@example.com").is_ok());
        assert!(parse_email("email", "user@bücher.example").is_ok());
    }

    #[test]
    fn phones() {
        assert_eq!(
            parse_phone("phone", "+49 30 901820", None).unwrap(),
            "+4930901820"
        );
        assert_eq!(
            parse_phone("phone", "030 901820", Some("de")).unwrap(),
            "+4930901820"
        );
        assert!(parse_phone("phone", "030 901820", None).is_err());
        assert!(parse_phone("phone", "not a number", None).is_err());
        assert!(parse_phone("phone", "+1 555", None).is_err());
        assert!(parse_phone("phone", "+1 202-555-0143", Some("zz';--")).is_err());
    }

    #[test]
    fn phone_extensions_are_refused() {
        for with_ext in [
            "+49 30 901820 ext. 12",
            "+49 30 901820 x12",
            "+1 202-555-0143 extension 7",
            "030 901820 ext 12",
        ] {
            match parse_phone("phones[0]", with_ext, Some("DE")) {
                Err(Error::Validation(v)) => {
                    assert!(v.has("phones[0]"), "{with_ext:?}: {v:?}");
                    assert!(v.to_string().contains("extension"), "{with_ext:?}: {v}");
                }
                other => panic!("{with_ext:?}: expected a Validation error, got {other:?}"),
            }
        }
        // Forms libphonenumber does not read are refused too, never cut short.
        assert!(parse_phone("phone", "+4930901820;ext=12", None).is_err());
        // The main number alone is fine.
        assert_eq!(
            parse_phone("phone", "+49 30 901820", None).unwrap(),
            "+4930901820"
        );
    }

    #[test]
    fn text_limits() {
        assert!(check_text("name", " \t", 10, true).is_err());
        assert!(check_text("name", "émoji 🎉 \u{202e}", 10, true).is_ok());
        assert!(check_text("name", "a\0b", 10, true).is_err());
        assert!(check_text("name", "abcdefghijk", 10, true).is_err());
    }
}
