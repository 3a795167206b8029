//! Placeholder of crmkit-sql for the testkit worktree: only the two functions crmkit-testkit
//! calls, with the real signatures. The real crate replaces this file.

use std::sync::Arc;

use crmkit_core::{Backend, Error, Modules, Result};

/// Opens the backend for `url` and applies the modules' migrations. The placeholder opens
/// nothing: every URL is a Config error.
pub async fn open(url: &str, modules: &Modules) -> Result<Arc<dyn Backend>> {
    let _ = modules;
    Err(Error::Config(format!(
        "crmkit-sql placeholder: cannot open {url}"
    )))
}

/// Helpers for tests against database servers.
pub mod testing {
    use crmkit_core::{Error, Result};

    /// Creates a new empty database on the PostgreSQL or MySQL server at `server_url` and
    /// returns its URL. The placeholder creates nothing.
    pub async fn fresh_database(server_url: &str) -> Result<String> {
        Err(Error::Config(format!(
            "crmkit-sql placeholder: cannot create a database on {server_url}"
        )))
    }
}
