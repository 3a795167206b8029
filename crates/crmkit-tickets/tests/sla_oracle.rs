//! The SLA state machine ([`crmkit_tickets::sla::SlaState`]) against a brute-force oracle:
//! random calendars (as in `business_time.rs`), random sequences of ticket events at random
//! minutes (create, pending, on hold, open, agent reply, customer message, solve, reopen),
//! and for every target the oracle walks UTC minutes, counting only working minutes in
//! which the target runs (unmet, and not paused by the ticket's status), to find the
//! instant the target is reached; due times, achieved instants and breaches must match.

use chrono::{DateTime, TimeDelta, Utc};
use crmkit_tickets::TicketStatus;
use crmkit_tickets::sla::{SlaEvent, SlaState, SlaTargetKind, SlaTargets};
use proptest::prelude::*;

mod common;
use common::*;

/// A high-level action on the ticket (as the service's commands do it).
#[derive(Debug, Clone, Copy)]
enum Act {
    Pending,
    OnHold,
    Open,
    AgentReply,
    Customer,
    Solve,
    Reopen,
}

fn act_strategy() -> impl Strategy<Value = Act> {
    prop_oneof![
        Just(Act::Pending),
        Just(Act::OnHold),
        Just(Act::Open),
        Just(Act::AgentReply),
        Just(Act::Customer),
        Just(Act::Solve),
        Just(Act::Reopen),
    ]
}

/// A primitive event with the ticket's status after it.
#[derive(Debug, Clone)]
struct Step {
    minute: usize,
    event: SlaEvent,
    status: TicketStatus,
}

/// Turns actions into SLA events the way the service does (an agent reply opens a new
/// ticket, a customer message reopens a pending one, invalid moves are skipped).
fn simulate(t0: usize, acts: &[(usize, Act)], targets: SlaTargets) -> Vec<Step> {
    let mut status = TicketStatus::New;
    let mut steps = vec![Step {
        minute: t0,
        event: SlaEvent::Created {
            policy: Some(crmkit_core::SlaPolicyId::from_uuid(uuid::Uuid::nil())),
            calendar: Some(crmkit_core::CalendarId::from_uuid(uuid::Uuid::nil())),
            targets,
        },
        status,
    }];
    let mut minute = t0;
    let push = |steps: &mut Vec<Step>, minute: usize, event: SlaEvent, status| {
        steps.push(Step {
            minute,
            event,
            status,
        })
    };
    for (gap, act) in acts {
        minute += gap;
        let mv = |to: TicketStatus, status: &mut TicketStatus, steps: &mut Vec<Step>| {
            if status.can_move_to(to) {
                *status = to;
                push(steps, minute, SlaEvent::Status(to), to);
            }
        };
        match act {
            Act::Pending => mv(TicketStatus::Pending, &mut status, &mut steps),
            Act::OnHold => mv(TicketStatus::OnHold, &mut status, &mut steps),
            Act::Open => mv(TicketStatus::Open, &mut status, &mut steps),
            Act::Solve => mv(TicketStatus::Solved, &mut status, &mut steps),
            Act::Reopen if status == TicketStatus::Solved => {
                mv(TicketStatus::Open, &mut status, &mut steps)
            }
            Act::Reopen => {}
            Act::AgentReply => {
                if status == TicketStatus::New {
                    mv(TicketStatus::Open, &mut status, &mut steps);
                }
                push(&mut steps, minute, SlaEvent::AgentReply, status);
            }
            Act::Customer => {
                if status == TicketStatus::Pending {
                    mv(TicketStatus::Open, &mut status, &mut steps);
                }
                push(&mut steps, minute, SlaEvent::CustomerMessage, status);
            }
        }
    }
    steps
}

fn stopped(s: TicketStatus) -> bool {
    matches!(s, TicketStatus::Solved | TicketStatus::Closed)
}

fn waiting(s: TicketStatus) -> bool {
    matches!(s, TicketStatus::Pending | TicketStatus::OnHold)
}

/// What the oracle expects of one target.
#[derive(Debug, PartialEq)]
struct Expect {
    achieved_at: Option<usize>,
    /// The minute (instant) the target is reached, if within the window.
    reached: Option<usize>,
    /// Whether the final state runs the clock.
    running: bool,
    breached: bool,
}

/// The oracle for one target kind.
fn oracle(
    kind: SlaTargetKind,
    target: i64,
    steps: &[Step],
    work: &[bool],
    now: usize,
) -> Option<Expect> {
    // The first step of the instance (creation, or the start of the last next-response
    // cycle).
    let first = match kind {
        SlaTargetKind::NextResponse => {
            let mut outstanding = false;
            let mut start = None;
            for (i, s) in steps.iter().enumerate() {
                match s.event {
                    SlaEvent::CustomerMessage if !outstanding => {
                        outstanding = true;
                        start = Some(i);
                    }
                    SlaEvent::AgentReply => outstanding = false,
                    _ => {}
                }
            }
            start?
        }
        _ => 0,
    };
    // Unmet and running after step i (i >= first).
    let unmet = |i: usize| -> bool {
        match kind {
            SlaTargetKind::Resolution => !stopped(steps[i].status),
            _ => !steps[first..=i]
                .iter()
                .any(|s| s.event == SlaEvent::AgentReply),
        }
    };
    let running = |i: usize| -> bool {
        unmet(i)
            && !stopped(steps[i].status)
            && (kind == SlaTargetKind::FirstResponse || !waiting(steps[i].status))
    };
    // The state index in force during minute m.
    let state_at = |m: usize| -> Option<usize> {
        let mut idx = None;
        for (i, s) in steps.iter().enumerate().skip(first) {
            if s.minute <= m {
                idx = Some(i);
            }
        }
        idx
    };
    let mut count = 0i64;
    let mut reached = None;
    for (m, w) in work.iter().enumerate().skip(steps[first].minute) {
        if let Some(i) = state_at(m)
            && *w
            && running(i)
        {
            count += 1;
            if count == target {
                reached = Some(m + 1);
                break;
            }
        }
    }
    let last = steps.len() - 1;
    let achieved_at = match kind {
        SlaTargetKind::Resolution => {
            if stopped(steps[last].status) {
                steps
                    .iter()
                    .enumerate()
                    .rev()
                    .find(|(i, s)| stopped(s.status) && (*i == 0 || !stopped(steps[i - 1].status)))
                    .map(|(_, s)| s.minute)
            } else {
                None
            }
        }
        _ => steps[first..]
            .iter()
            .find(|s| s.event == SlaEvent::AgentReply)
            .map(|s| s.minute),
    };
    let breached = reached.is_some_and(|r| {
        let at_r = state_at(r).is_some_and(&unmet) && now > r;
        let later = steps
            .iter()
            .enumerate()
            .skip(first)
            .any(|(i, s)| s.minute > r && s.minute <= now && unmet(i));
        at_r || later
    });
    Some(Expect {
        achieved_at,
        reached,
        running: running(last),
        breached,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn sla_state_matches_the_oracle(
        (raw, start) in case_strategy(),
        first_response in prop::option::of(1i64..900),
        next_response in prop::option::of(1i64..900),
        resolution in prop::option::of(1i64..2000),
        t0 in 0usize..1440,
        acts in prop::collection::vec((0usize..600, act_strategy()), 0..14),
        probe in 0usize..1440,
    ) {
        let cal = raw.build();
        let work = raw.minutes(start);
        let targets = SlaTargets { first_response, next_response, resolution };
        let steps = simulate(t0, &acts, targets);
        let at = |m: usize| start + TimeDelta::minutes(m as i64);
        let mut state = SlaState::default();
        for s in &steps {
            state.apply(&cal, &s.event, at(s.minute)).unwrap();
        }
        let now = steps[steps.len() - 1].minute + probe;
        prop_assert!(now < WINDOW);
        let mut settled = state.clone();
        settled.settle(&cal, at(now));
        let mut next_due: Option<DateTime<Utc>> = None;
        let mut next_due_known = true;
        for kind in SlaTargetKind::ALL {
            let expect = targets.get(kind).and_then(|t| oracle(kind, t, &steps, &work, now));
            let got = state.target(kind);
            prop_assert_eq!(got.is_some(), expect.is_some(), "{:?} exists", kind);
            let (Some(got), Some(expect)) = (got, expect) else { continue };
            prop_assert_eq!(got.achieved_at, expect.achieved_at.map(at), "{:?} achieved_at", kind);
            prop_assert_eq!(
                got.is_breached(&cal, at(now)),
                expect.breached,
                "{:?} breached at {} (oracle {:?})", kind, at(now), expect
            );
            let s = settled.target(kind).unwrap();
            prop_assert_eq!(s.breached_at.is_some(), expect.breached, "{:?} settled", kind);
            if let Some(b) = s.breached_at {
                prop_assert_eq!(Some(b), expect.reached.map(at), "{:?} breached_at", kind);
            }
            if expect.running {
                if let Some(r) = expect.reached {
                    prop_assert_eq!(got.due_at(&cal), Some(at(r)), "{:?} due_at", kind);
                    next_due = Some(next_due.map_or(at(r), |d| d.min(at(r))));
                } else {
                    // Due beyond the oracle's window.
                    next_due_known = false;
                    if let Some(d) = got.due_at(&cal) {
                        prop_assert!(d >= at(WINDOW - 1), "{:?} due too early", kind);
                    }
                }
            } else {
                prop_assert_eq!(got.due_at(&cal), None, "{:?} not running", kind);
            }
        }
        if next_due_known {
            prop_assert_eq!(state.next_due_at(&cal), next_due, "next_due_at");
        }
    }
}
