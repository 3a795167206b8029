//! What the SLA checks of [`crate::tickets_sla`], [`crate::tickets_analytics`] and
//! [`crate::tickets`] share: a fixed Monday morning, business calendars, a catch-all
//! policy, and reading a ticket's SLA and its targets.

use chrono::{DateTime, Duration, TimeZone, Utc};
use crmkit_core::{CalendarId, Ctx, SlaPolicyId, TicketId};
use crmkit_tickets::calendar::{CalendarSpec, Interval};
use crmkit_tickets::sla::{NewSlaPolicy, SlaConditions, SlaTargetKind, SlaTargets, StoredCalendar};
use crmkit_tickets::{TargetView, TicketSla};

use crate::check::{At, CheckResult, Failure};
use crate::tickets::Fixture;

/// Monday 2027-04-05 09:00 UTC.
pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 4, 5, 9, 0, 0).unwrap()
}

/// `minutes` wall minutes after [`t0`].
pub(crate) fn t0_plus(minutes: i64) -> DateTime<Utc> {
    t0() + Duration::minutes(minutes)
}

/// A UTC spec working `interval` on each of `days` (and no other day).
pub(crate) fn days(days: &[chrono::Weekday], interval: Interval) -> CalendarSpec {
    let mut spec = CalendarSpec::new("UTC");
    for d in days {
        *spec.hours.get_mut(*d) = vec![interval];
    }
    spec
}

/// Every day, all day, UTC (business minutes are wall minutes).
pub(crate) fn always() -> CalendarSpec {
    use chrono::Weekday::*;
    days(&[Mon, Tue, Wed, Thu, Fri, Sat, Sun], Interval::all_day())
}

/// Monday to Friday, 09:00-17:00 UTC.
pub(crate) fn office() -> CalendarSpec {
    use chrono::Weekday::*;
    days(&[Mon, Tue, Wed, Thu, Fri], Interval::hm(9, 0, 17, 0))
}

/// Targets in business minutes: first response, next response, resolution.
pub(crate) fn targets(fr: Option<i64>, nr: Option<i64>, res: Option<i64>) -> SlaTargets {
    SlaTargets {
        first_response: fr,
        next_response: nr,
        resolution: res,
    }
}

/// An active policy "all" at position 1 on calendar `cal`, matching every ticket.
pub(crate) fn catch_all(cal: CalendarId, t: SlaTargets) -> NewSlaPolicy {
    NewSlaPolicy {
        name: "all".into(),
        position: 1,
        conditions: SlaConditions::default(),
        calendar: cal,
        targets: t,
        active: true,
    }
}

/// A calendar "cal" on `spec`, stored by the admin.
pub(crate) async fn calendar(f: &Fixture, spec: CalendarSpec) -> CheckResult<StoredCalendar> {
    f.tickets
        .sla_calendars()
        .create(&f.admin, "cal", spec)
        .await
        .at("create calendar")
}

/// A calendar on `spec` and one catch-all policy on it with targets `t` (see
/// [`catch_all`]), stored by the admin.
pub(crate) async fn catch_all_policy(
    f: &Fixture,
    spec: CalendarSpec,
    t: SlaTargets,
) -> CheckResult<SlaPolicyId> {
    let cal = calendar(f, spec).await?.id;
    Ok(f.tickets
        .sla_policies()
        .create(&f.admin, catch_all(cal, t))
        .await
        .at("create policy")?
        .id)
}

/// The SLA of ticket `id` as `ctx` reads it; fails when the ticket has none.
pub(crate) async fn sla(f: &Fixture, ctx: &Ctx, id: TicketId) -> CheckResult<TicketSla> {
    f.tickets
        .sla(ctx, id)
        .await
        .at("sla")?
        .ok_or_else(|| Failure::new("the ticket has an SLA"))
}

/// The target of kind `k` of `s`; fails when the SLA has no such target.
pub(crate) fn target(s: &TicketSla, k: SlaTargetKind) -> CheckResult<&TargetView> {
    s.target(k)
        .ok_or_else(|| Failure::new(format!("the SLA has a {k:?} target")))
}

/// When the target of kind `k` of `s` is due (`None` when it has none or it is not
/// running).
pub(crate) fn due(s: &TicketSla, k: SlaTargetKind) -> Option<DateTime<Utc>> {
    s.target(k).and_then(|t| t.due_at)
}
