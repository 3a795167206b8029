//! (being written)

use crmkit_core::store::TableDef;

/// Event kinds this part emits.
pub const EVENT_KINDS: &[&str] = &[];

pub(crate) fn tables() -> Vec<TableDef> {
    vec![]
}
