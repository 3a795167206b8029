//! The action kind the tickets module offers to automation rules (see
//! [`crmkit_core::action`]): `ticket.escalate`, `{"reason": "..."}` on a ticket, runs
//! [`Tickets::escalate`] as the rule's owner, raising the ticket's priority one step
//! (low, normal, high, urgent). An urgent ticket cannot be raised further: the action
//! fails, naming why, and the engine keeps it as a failed run. The automation module's
//! built-in `escalate_ticket` action runs through it.

use std::sync::Arc;

use crmkit_core::action::CustomAction;
use crmkit_core::store::BoxFuture;
use crmkit_core::{Ctx, Error, RecordRef, Result, Store, TicketId};
use serde_json::Value as Json;

use crate::{Escalation, TicketPriority, Tickets};

/// The action kinds of this module.
pub fn actions() -> Vec<Arc<dyn CustomAction>> {
    vec![Arc::new(Escalate)]
}

struct Escalate;

fn reason(params: &Json) -> Result<&str> {
    match params.get("reason").and_then(Json::as_str) {
        Some(r) if !r.trim().is_empty() => Ok(r),
        _ => Err(Error::validation("reason", "is required (a text)")),
    }
}

impl CustomAction for Escalate {
    fn kind(&self) -> &'static str {
        "ticket.escalate"
    }

    fn applies_to(&self, record_kind: Option<&str>) -> bool {
        record_kind == Some("ticket")
    }

    fn validate(&self, params: &Json) -> Result<()> {
        reason(params).map(|_| ())
    }

    fn run<'a>(
        &'a self,
        store: &'a Store,
        ctx: &'a Ctx,
        record: Option<&'a RecordRef>,
        params: &'a Json,
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let why = reason(params)?;
            let id = record
                .filter(|r| r.kind.as_str() == "ticket")
                .map(|r| TicketId::from_uuid(r.id))
                .ok_or_else(|| Error::validation("record", "the action runs on a ticket"))?;
            let tickets = Tickets::new(store)?;
            let t = tickets.get(ctx, id).await?;
            let all = TicketPriority::ALL;
            let next = all
                .iter()
                .position(|p| *p == t.priority)
                .and_then(|i| all.get(i + 1))
                .copied()
                .ok_or_else(|| {
                    Error::validation("priority", "the ticket is urgent already: nothing to raise")
                })?;
            let mut e = Escalation::because(why);
            e.priority = Some(next);
            tickets.escalate(ctx, id, t.version, e).await?;
            Ok(format!("escalated the ticket to {next:?}: {why}").to_lowercase())
        })
    }
}
