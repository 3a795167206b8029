//! What the scenario suites share: the failure type a check returns, context for crmkit
//! results, and the assertions (`ensure!`, `ensure_eq!`, expected error variants).

use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;

use crmkit_core::{Error, Store};

/// A failed check: what differed, and where in the suite it was noticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong.
    pub message: String,
}

impl Failure {
    /// A failure with a message, located at the caller.
    #[track_caller]
    pub fn new(message: impl Into<String>) -> Self {
        let l = Location::caller();
        Failure {
            message: format!("{}:{}: {}", l.file(), l.line(), message.into()),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl From<Error> for Failure {
    #[track_caller]
    fn from(e: Error) -> Self {
        Failure::new(format!("unexpected error: {e:?}"))
    }
}

/// The result of a check.
pub type CheckResult<T = ()> = Result<T, Failure>;

/// The future of a store check (not `Send`: await it, do not spawn it).
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = CheckResult> + 'a>>;
/// A store check as a function pointer.
pub type CheckFn = for<'a> fn(&'a Store) -> CheckFuture<'a>;

/// `vec![(name, CheckFn)]` for the named `async fn(&Store) -> CheckResult` checks in scope.
macro_rules! check_list {
    ($($name:ident),* $(,)?) => {
        vec![$((stringify!($name), {
            fn wrap(s: &::crmkit_core::Store) -> $crate::check::CheckFuture<'_> {
                Box::pin($name(s))
            }
            wrap as $crate::check::CheckFn
        })),*]
    };
}

/// Runs `checks` one after the other on `store` and reports every failure (not just the
/// first), counted as "`n` `what` check(s) failed".
pub async fn run_checks(
    store: &Store,
    checks: Vec<(&'static str, CheckFn)>,
    what: &str,
) -> CheckResult {
    let mut failures = vec![];
    for (name, check) in checks {
        if let Err(e) = check(store).await {
            failures.push(format!("{name}: {e}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(format!(
            "{} {what} check(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        )))
    }
}

/// Defines a suite module's `checks()` (with the given rustdoc), listing the named
/// `async fn(&Store) -> CheckResult` checks, and the exported macro `$names`, which calls
/// a macro with the same names: the one list behind `checks()` and the conformance tests.
macro_rules! suite_checks {
    ($(#[$doc:meta])* names: $names:ident, checks: [$($name:ident),* $(,)?] $(,)?) => {
        $(#[$doc])*
        pub fn checks() -> Vec<(&'static str, $crate::check::CheckFn)> {
            check_list![$($name),*]
        }

        suite_checks!(@names [$] $names [$($name),*]);
    };
    (@names [$d:tt] $names:ident [$($name:ident),*]) => {
        #[doc = concat!(
            "Calls macro `$then` with the names of the checks of `",
            module_path!(),
            "::checks`: the one list behind it and the conformance test files."
        )]
        #[macro_export]
        macro_rules! $names {
            ($d then:ident) => {
                $d then! { $($name),* }
            };
        }
    };
}

/// Adds context to a crmkit result: an error becomes a [`Failure`] saying what was being
/// done, located at the caller.
pub trait At<T> {
    /// The value, or a failure naming `what`.
    fn at(self, what: &str) -> CheckResult<T>;
}

impl<T> At<T> for crmkit_core::Result<T> {
    #[track_caller]
    fn at(self, what: &str) -> CheckResult<T> {
        let l = Location::caller();
        self.map_err(|e| Failure {
            message: format!("{}:{}: {what}: unexpected error: {e:?}", l.file(), l.line()),
        })
    }
}

/// Fails the check unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::check::Failure::new(format!($($fmt)+)));
        }
    };
}

/// Fails the check unless both sides are equal, showing both.
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($fmt:tt)+) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err($crate::check::Failure::new(format!(
                "{}:\n  left:  {:?}\n  right: {:?}",
                format!($($fmt)+),
                l,
                r
            )));
        }
    }};
}

/// Passes when `r` is an error that `is` accepts; the failure names `what` and the
/// `expected` error.
#[track_caller]
pub(crate) fn expect_error<T: fmt::Debug>(
    r: crmkit_core::Result<T>,
    what: &str,
    expected: &str,
    is: impl Fn(&Error) -> bool,
) -> CheckResult {
    match r {
        Err(e) if is(&e) => Ok(()),
        other => Err(Failure::new(format!(
            "{what}: expected {expected}, got {other:?}"
        ))),
    }
}

/// Passes when `r` is a Validation error naming `field`.
#[track_caller]
pub fn expect_validation<T: fmt::Debug>(
    r: crmkit_core::Result<T>,
    field: &str,
    what: &str,
) -> CheckResult {
    let expected = format!("a Validation error naming {field:?}");
    expect_error(
        r,
        what,
        &expected,
        |e| matches!(e, Error::Validation(v) if v.has(field)),
    )
}

/// Passes when `r` is a Validation error (naming any field).
#[track_caller]
pub fn expect_invalid<T: fmt::Debug>(r: crmkit_core::Result<T>, what: &str) -> CheckResult {
    expect_error(r, what, "a Validation error", |e| {
        matches!(e, Error::Validation(_))
    })
}

/// Passes when `r` is NotFound (of any kind).
#[track_caller]
pub fn expect_not_found<T: fmt::Debug>(r: crmkit_core::Result<T>, what: &str) -> CheckResult {
    expect_error(r, what, "NotFound", |e| matches!(e, Error::NotFound { .. }))
}

/// Passes when `r` is PermissionDenied.
#[track_caller]
pub fn expect_denied<T: fmt::Debug>(r: crmkit_core::Result<T>, what: &str) -> CheckResult {
    expect_error(r, what, "PermissionDenied", |e| {
        matches!(e, Error::PermissionDenied(_))
    })
}

/// The `(field, reason)` pairs of a Validation error, or `None` for anything else (to
/// compare the error of a reference to a hidden record with that of a missing one).
pub fn validation_reasons<T>(r: &crmkit_core::Result<T>) -> Option<Vec<(String, String)>> {
    match r {
        Err(Error::Validation(v)) => Some(
            v.errors
                .iter()
                .map(|e| (e.field.clone(), e.reason.clone()))
                .collect(),
        ),
        _ => None,
    }
}
