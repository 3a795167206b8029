//! The [`KindFixture`]s of the built-in record kinds, for the generic record checks in
//! [`crate::records`], one file per module.

use crate::records::KindFixture;

pub mod activities;
pub mod automation;
pub mod contacts;
pub mod pipeline;
pub mod tickets;

/// Every built-in kind's fixture.
pub fn all() -> Vec<KindFixture> {
    let mut out = contacts::all();
    out.extend(pipeline::all());
    out.extend(activities::all());
    out.extend(tickets::all());
    out.extend(automation::all());
    out
}

/// The built-in kinds that are tenant configuration: every user of the tenant reads their
/// records, only Admins and Managers write them (see
/// [`crate::records::configuration_kinds`]).
pub fn configuration_kinds() -> Vec<&'static str> {
    tickets::configuration_kinds()
}
