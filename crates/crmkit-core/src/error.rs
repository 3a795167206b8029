//! The error type shared by every crmkit crate.
//!
//! Variants have fixed meanings so that callers (and the conformance suite) can match on
//! them: [`Error::NotFound`] for anything the caller may not see, [`Error::Conflict`] for a
//! stale version, [`Error::Duplicate`] naming the existing record, [`Error::Validation`] with
//! every bad field at once, and so on.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::id::{RecordKind, RecordRef};

/// A crmkit result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a crmkit call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The record does not exist, belongs to another tenant, or is not visible to the actor.
    /// The same error for all three, so existence does not leak.
    #[error("{kind} {id} not found")]
    NotFound {
        /// Kind of the record asked for.
        kind: RecordKind,
        /// The id asked for, as given.
        id: String,
    },
    /// An update carried a stale version.
    #[error("{record} was changed concurrently: expected version {expected}, found {actual}")]
    Conflict {
        /// The record.
        record: RecordRef,
        /// The version the caller based its change on.
        expected: u64,
        /// The version in storage.
        actual: u64,
    },
    /// A record with the same unique value exists.
    #[error("duplicate {field}: {}", existing.as_ref().map(|r| format!("already used by {r}")).unwrap_or_else(|| "already used".into()))]
    Duplicate {
        /// Kind of the record that could not be written.
        kind: RecordKind,
        /// The field whose value is taken.
        field: String,
        /// The record that already holds the value, when known.
        existing: Option<RecordRef>,
    },
    /// Input failed validation; every failing field is listed.
    #[error("invalid input: {0}")]
    Validation(ValidationErrors),
    /// The actor may not do this.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The record's state does not allow the change.
    #[error("invalid transition of {record}: {reason}")]
    InvalidTransition {
        /// The record.
        record: RecordRef,
        /// Why the transition is not allowed.
        reason: String,
    },
    /// Arithmetic or comparison across two currencies.
    #[error("currency mismatch: {left} vs {right}")]
    CurrencyMismatch {
        /// Currency of the left operand.
        left: String,
        /// Currency of the right operand.
        right: String,
    },
    /// The composition of modules is wrong (duplicate or missing module, bad URL, ...).
    #[error("configuration: {0}")]
    Config(String),
    /// The database schema is newer than this code.
    #[error(
        "database schema of module {module} is at version {found}, newer than this code's {supported}; upgrade crmkit"
    )]
    SchemaTooNew {
        /// The module.
        module: String,
        /// Version found in the database.
        found: u32,
        /// Latest version this code knows.
        supported: u32,
    },
    /// The storage backend failed.
    #[error("storage: {message}")]
    Storage {
        /// What failed.
        message: String,
        /// The driver's error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    /// A storage error with a message only.
    pub fn storage(message: impl Into<String>) -> Self {
        Error::Storage {
            message: message.into(),
            source: None,
        }
    }

    /// A storage error wrapping a driver error.
    pub fn storage_from(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Storage {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// A not-found error for `kind` and `id`.
    pub fn not_found(kind: RecordKind, id: impl fmt::Display) -> Self {
        Error::NotFound {
            kind,
            id: id.to_string(),
        }
    }

    /// A version conflict: `record` was expected at version `expected` but is at `actual`.
    pub fn conflict(record: impl Into<RecordRef>, expected: u64, actual: u64) -> Self {
        Error::Conflict {
            record: record.into(),
            expected,
            actual,
        }
    }

    /// A validation error on one field.
    pub fn validation(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Validation(ValidationErrors::single(field, reason))
    }

    /// The validation errors, if this is a Validation error.
    pub fn validation_errors(&self) -> Option<&ValidationErrors> {
        match self {
            Error::Validation(v) => Some(v),
            _ => None,
        }
    }
}

/// One failing field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// The field, in the API's naming (`emails[1]`, `custom.tier`).
    pub field: String,
    /// Why it failed, in words.
    pub reason: String,
}

/// All failing fields of one input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationErrors {
    /// The record kind the input was for, when known (the generic record API always
    /// names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<RecordKind>,
    /// The failing fields, in the order they were checked.
    pub errors: Vec<FieldError>,
}

impl ValidationErrors {
    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// One error.
    pub fn single(field: impl Into<String>, reason: impl Into<String>) -> Self {
        let mut v = Self::new();
        v.push(field, reason);
        v
    }

    /// Adds an error.
    pub fn push(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            reason: reason.into(),
        });
    }

    /// Adds the errors of a check on a nested field, prefixing their names.
    pub fn extend_prefixed(&mut self, prefix: &str, other: ValidationErrors) {
        for e in other.errors {
            self.errors.push(FieldError {
                field: format!("{prefix}{}", e.field),
                reason: e.reason,
            });
        }
    }

    /// Records the error of `r` under its own field name, returning the value if any.
    pub fn check<T>(&mut self, r: Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(Error::Validation(v)) => {
                self.errors.extend(v.errors);
                None
            }
            Err(other) => {
                self.push("_", other.to_string());
                None
            }
        }
    }

    /// Whether there are no errors.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Whether `field` failed.
    pub fn has(&self, field: &str) -> bool {
        self.errors.iter().any(|e| e.field == field)
    }

    /// `Ok(())` if empty, else the Validation error.
    pub fn into_result(self) -> Result<()> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(self))
        }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(k) = &self.kind {
            write!(f, "{k}: ")?;
        }
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", e.field, e.reason)?;
        }
        Ok(())
    }
}

impl From<ValidationErrors> for Error {
    fn from(v: ValidationErrors) -> Self {
        Error::Validation(v)
    }
}
