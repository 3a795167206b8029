//! The action kind the tickets module offers to automation rules (see
//! [`crmkit_core::action`]): `ticket.escalate`, `{"reason": "..."}` on a ticket, runs
//! [`Tickets::escalate`] as the rule's owner, raising the ticket's priority one step
//! (low, normal, high, urgent). An urgent ticket cannot be raised further: the action
//! fails, naming why, and the engine keeps it as a failed run. The automation module's
//! built-in `escalate_ticket` action runs through it.

use std::sync::Arc;

use crmkit_core::action::{ActionCall, CustomAction, RecordAction};
use crmkit_core::store::BoxFuture;
use crmkit_core::{Error, Result, TicketId};
use serde_json::Value as Json;

use crate::{Escalation, TicketPriority, Tickets};

/// The action kinds of this module.
pub fn actions() -> Vec<Arc<dyn CustomAction>> {
    vec![Arc::new(RecordAction {
        kind: "ticket.escalate",
        on: &["ticket"],
        params: reason,
        run: escalate,
    })]
}

fn reason(params: &Json) -> Result<String> {
    match params.get("reason").and_then(Json::as_str) {
        Some(r) if !r.trim().is_empty() => Ok(r.to_owned()),
        _ => Err(Error::validation("reason", "is required (a text)")),
    }
}

fn escalate(a: ActionCall<'_, String>) -> BoxFuture<'_, Result<String>> {
    Box::pin(async move {
        let why = a.params;
        let id = a
            .record
            .filter(|r| r.kind.as_str() == "ticket")
            .map(|r| TicketId::from_uuid(r.id))
            .ok_or_else(|| Error::validation("record", "the action runs on a ticket"))?;
        let tickets = Tickets::new(a.store)?;
        let t = tickets.get(a.ctx, id).await?;
        let all = TicketPriority::ALL;
        let next = all
            .iter()
            .position(|p| *p == t.priority)
            .and_then(|i| all.get(i + 1))
            .copied()
            .ok_or_else(|| {
                Error::validation("priority", "the ticket is urgent already: nothing to raise")
            })?;
        let mut e = Escalation::because(&why);
        e.priority = Some(next);
        tickets.escalate(a.ctx, id, t.version, e).await?;
        Ok(format!("escalated the ticket to {next:?}: {why}").to_lowercase())
    })
}
