//! Lead and campaign reports: the lead funnel by source and campaign ROI.
//!
//! ## Which records
//! Both reports see what the actor sees, through the condition lists use
//! (`visibility_scope`: Admin and Manager every record, a Rep and a ReadOnly user the
//! records they or their teams own), and never a deleted record. Campaigns follow the
//! same rule (the campaigns module's visibility: Admin and Manager every campaign, others
//! their own and their teams'); whoever sees a campaign sees its cost, as
//! `Campaigns::get` shows it, so the ROI report has a row for exactly the campaigns the
//! actor sees, and counts in it only the deals and leads the actor sees. A hidden record
//! never shows through a count, a total or a group.
//!
//! ## Lead funnel ([`LeadFunnel`])
//! The **cohort** is the leads created on a local date of the period (in the tenant's
//! report zone). Per source (the lead's `source`, and per owner, team or campaign when
//! `by` is given) the report counts them by their status **now**, one count per lead
//! status that exists (`new`, `contacted`, `nurturing`, `qualified`, `disqualified`,
//! `converted`; the first four are the open, "working" statuses), so the counts of a row
//! add up to `created`. `conversion_rate` is `converted / created`, rounded half to even
//! to 4 places (`None` when nothing was created). A lead whose status changed after the
//! period counts in its current status. There is one row per source and group that has
//! leads in the cohort, ordered by source (in the order of
//! [`crmkit_pipeline::deal::Source::NAMES`]) and then group (`None` first). Every count is
//! one grouped aggregate over the leads table (`source`, the `by` column, `status`).
//!
//! ## Campaign ROI ([`CampaignRoi`])
//! A deal or lead is **attributed** to a campaign when its `campaign` field is that
//! campaign; a deal made by converting a lead inherits the lead's campaign (and so is
//! attributed to it). Per campaign the actor sees (or only `campaign`: an unknown, deleted
//! or hidden one is the Validation error `campaign: is not a campaign of this tenant`),
//! ordered by name and then id:
//! - `cost`: the campaign's actual cost (the whole campaign's, not prorated to the
//!   period; 0 when none is recorded), in the base currency;
//! - `revenue`: the amounts of the attributed deals **won** on a local date of `period`
//!   (every won attributed deal when `period` is `None`), in the base currency; `won` is
//!   their count;
//! - `roi`: `(revenue - cost) / cost`, from the two base-currency figures, rounded half to
//!   even to 4 places; `None` when the cost is 0;
//! - `leads` and `deals`: every live attributed lead and deal the actor sees (any status,
//!   any time).
//!
//! Money is converted as in [`crate::sales`]: each currency's exact total at the rate of
//! `rate_date` (the period's last day, or today in the report zone without a period),
//! rounded once half to even to the base currency's minor unit; a currency without a rate
//! is a Validation error on `rate_date` naming the currency and the date. The cost of each
//! campaign is one grouped aggregate over the campaigns table (its cost column summed per
//! campaign), the attributed counts and totals come from
//! [`crmkit_pipeline::campaign::Campaigns::attribution`] (exact 128-bit totals), and the
//! deals won in the period from the sales reports' won aggregate grouped by campaign.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use chrono_tz::Tz;
use crmkit_core::record::reference_reason;
use crmkit_core::service::visibility_scope;
use crmkit_core::store::{CmpOp, Cond, Measure, Value};
use crmkit_core::{CampaignId, Ctx, Currency, Error, Result, Store};
use crmkit_pipeline::campaign::{CAMPAIGN_TABLE, Campaigns, CurrencyTotal};
use crmkit_pipeline::deal::Source;
use crmkit_pipeline::lead::{LEAD_TABLE, LeadStatus};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::period::{Period, local_date};
use crate::sales::{Converter, Dim, Sales, ratio, units};

/// What the lead funnel also groups by: the lead's owner, team or campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadDim {
    /// The owner (a user id).
    Owner,
    /// The team (a team id, or none).
    Team,
    /// The campaign (a campaign id, or none).
    Campaign,
}

impl LeadDim {
    /// Every value's JSON name.
    pub const NAMES: &'static [&'static str] = &["owner", "team", "campaign"];

    fn column(self) -> &'static str {
        match self {
            LeadDim::Owner => "owner_id",
            LeadDim::Team => "team_id",
            LeadDim::Campaign => "campaign_id",
        }
    }
}

/// The lead funnel of the leads created in a period (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadFunnel {
    /// The period the leads were created in.
    pub period: Period,
    /// Also group by this (per source only when `None`).
    pub by: Option<LeadDim>,
}

/// One row of [`LeadFunnel`]: the cohort's leads of one source (and group) by status now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadFunnelRow {
    /// The source.
    pub source: Source,
    /// The `by` value (a uuid; `None` for no team or campaign, or without `by`).
    pub group: Option<String>,
    /// Leads created in the period.
    pub created: u64,
    /// Of those, now `new`.
    pub new: u64,
    /// Now `contacted`.
    pub contacted: u64,
    /// Now `nurturing`.
    pub nurturing: u64,
    /// Now `qualified`.
    pub qualified: u64,
    /// Now `disqualified`.
    pub disqualified: u64,
    /// Now `converted`.
    pub converted: u64,
    /// `converted / created`, 4 places, half to even (`None` when none was created).
    pub conversion_rate: Option<Decimal>,
}

impl LeadFunnelRow {
    /// A row from its counts per status (in the order of [`LeadStatus::ALL`]); shared with
    /// the oracle of the conformance checks.
    pub fn from_counts(
        source: Source,
        group: Option<String>,
        counts: [u64; LeadStatus::ALL.len()],
    ) -> LeadFunnelRow {
        let at = |s: LeadStatus| counts[s as usize];
        let created = counts.iter().sum::<u64>();
        let converted = at(LeadStatus::Converted);
        LeadFunnelRow {
            source,
            group,
            created,
            new: at(LeadStatus::New),
            contacted: at(LeadStatus::Contacted),
            nurturing: at(LeadStatus::Nurturing),
            qualified: at(LeadStatus::Qualified),
            disqualified: at(LeadStatus::Disqualified),
            converted,
            conversion_rate: ratio(i128::from(converted), i128::from(created), 4),
        }
    }
}

/// Campaign ROI (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignRoi {
    /// Only this campaign (every campaign the actor sees when `None`).
    pub campaign: Option<CampaignId>,
    /// The period the revenue's deals were won in (every won deal when `None`).
    pub period: Option<Period>,
    /// The date whose rates convert amounts (the period's last day, or today in the
    /// report zone without a period, when `None`).
    pub rate_date: Option<NaiveDate>,
}

/// One campaign of [`CampaignRoi`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoiRow {
    /// The campaign.
    pub campaign: CampaignId,
    /// Its name.
    pub name: String,
    /// Its actual cost in the base currency (0 when none is recorded).
    pub cost: Decimal,
    /// Amounts of the attributed deals won in the period, in the base currency.
    pub revenue: Decimal,
    /// `(revenue - cost) / cost`, 4 places (`None` when the cost is 0).
    pub roi: Option<Decimal>,
    /// Attributed leads (live, visible).
    pub leads: u64,
    /// Attributed deals (live, visible, any status).
    pub deals: u64,
    /// Attributed deals won in the period (those in `revenue`).
    pub won: u64,
}

impl RoiRow {
    /// `(revenue - cost) / cost` of two base-currency figures with at most `digits`
    /// places, exactly, rounded half to even to 4 places; `None` when `cost` is 0 (shared
    /// with the oracle of the conformance checks).
    pub fn roi_of(revenue: Decimal, cost: Decimal, digits: u32) -> Option<Decimal> {
        let r = units(revenue, digits)?;
        let c = units(cost, digits)?;
        ratio(r.checked_sub(c)?, c, 4)
    }
}

// ---------------------------------------------------------------------------------------
// Computation
// ---------------------------------------------------------------------------------------

fn bad() -> Error {
    Error::storage("malformed aggregate row")
}

fn count_of(v: &Value) -> Result<u64> {
    v.as_int().map(|i| i as u64).ok_or_else(bad)
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Uuid(u) => Some(u.to_string()),
        Value::Text(t) => Some(t.clone()),
        Value::Int(i) => Some(i.to_string()),
    }
}

fn too_large() -> Error {
    Error::validation("amount", "a report total is too large")
}

/// Orders lead funnel rows by source (in [`Source::NAMES`] order) and group.
pub fn sort_lead_rows(rows: &mut [LeadFunnelRow]) {
    rows.sort_by(|a, b| {
        (source_index(a.source), &a.group).cmp(&(source_index(b.source), &b.group))
    });
}

fn source_index(s: Source) -> usize {
    Source::NAMES
        .iter()
        .position(|n| *n == s.as_str())
        .unwrap_or(usize::MAX)
}

/// Orders ROI rows by campaign name, then id.
pub fn sort_roi_rows(rows: &mut [RoiRow]) {
    rows.sort_by(|a, b| (&a.name, a.campaign).cmp(&(&b.name, b.campaign)));
}

/// The lead and campaign reports over one store.
pub(crate) struct LeadReports<'a> {
    pub store: &'a Store,
    pub tz: Tz,
}

impl LeadReports<'_> {
    /// [`LeadFunnel`].
    pub async fn lead_funnel(&self, ctx: &Ctx, r: &LeadFunnel) -> Result<Vec<LeadFunnelRow>> {
        let (start, end) = r.period.instants(self.tz);
        let cond = visibility_scope(ctx, false)
            .and(Cond::Cmp(
                "created_at".into(),
                CmpOp::Gte,
                Value::timestamp(start),
            ))
            .and(Cond::Cmp(
                "created_at".into(),
                CmpOp::Lt,
                Value::timestamp(end),
            ));
        let mut group_by = vec!["source"];
        if let Some(d) = r.by {
            group_by.push(d.column());
        }
        let n = group_by.len();
        group_by.push("status");
        type Counts = [u64; LeadStatus::ALL.len()];
        let mut groups: BTreeMap<(String, Option<String>), Counts> = BTreeMap::new();
        for row in self
            .store
            .aggregate(ctx, LEAD_TABLE, cond, &group_by, vec![Measure::Count])
            .await?
        {
            let source = row[0].as_text().ok_or_else(bad)?.to_owned();
            let group = if r.by.is_some() {
                text_of(&row[1])
            } else {
                None
            };
            let status = row[n]
                .as_text()
                .and_then(LeadStatus::parse)
                .ok_or_else(|| Error::storage("unknown lead status in the leads table"))?;
            groups.entry((source, group)).or_default()[status as usize] += count_of(&row[n + 1])?;
        }
        let mut out = groups
            .into_iter()
            .map(|((source, group), counts)| {
                let source = Source::parse(&source).ok_or_else(|| {
                    Error::storage(format!("unknown lead source {source:?} in the leads table"))
                })?;
                Ok(LeadFunnelRow::from_counts(source, group, counts))
            })
            .collect::<Result<Vec<_>>>()?;
        sort_lead_rows(&mut out);
        Ok(out)
    }

    /// [`CampaignRoi`].
    pub async fn campaign_roi(
        &self,
        ctx: &Ctx,
        r: &CampaignRoi,
        sales: &Sales<'_>,
    ) -> Result<Vec<RoiRow>> {
        // The campaigns the actor sees (the campaign lists' scope) and their costs.
        let mut cond = visibility_scope(ctx, false);
        if let Some(c) = r.campaign {
            cond = cond.and(Cond::eq("id", c.as_uuid()));
        }
        let campaigns = self
            .store
            .aggregate(
                ctx,
                CAMPAIGN_TABLE,
                cond,
                &["id", "name", "cost_currency"],
                vec![Measure::Sum("actual_cost".into())],
            )
            .await?;
        if r.campaign.is_some() && campaigns.is_empty() {
            return Err(Error::validation(
                "campaign",
                reference_reason(&CampaignId::kind()),
            ));
        }
        let rate_date = r
            .rate_date
            .or(r.period.map(|p| p.to()))
            .unwrap_or_else(|| local_date(self.tz, ctx.now()));
        let mut conv = Converter::new(self.store, ctx, rate_date).await?;
        let mut costs: BTreeMap<CampaignId, (String, Decimal)> = BTreeMap::new();
        for row in campaigns {
            let id = row[0]
                .as_uuid()
                .map(CampaignId::from_uuid)
                .ok_or_else(bad)?;
            let name = row[1].as_text().ok_or_else(bad)?.to_owned();
            let cost = match row[2].as_text() {
                Some(code) => {
                    let units = row[3].as_sum().ok_or_else(bad)?;
                    conv.convert(ctx, Currency::parse(code)?, units, 4).await?
                }
                None => Decimal::ZERO,
            };
            costs.insert(id, (name, cost));
        }
        let ids: Vec<CampaignId> = costs.keys().copied().collect();
        let attributed = Campaigns::new(self.store)?
            .attribution(ctx, Some(&ids))
            .await?;
        // Won in the period: (count, totals) per campaign.
        let mut won: BTreeMap<CampaignId, (u64, Vec<CurrencyTotal>)> = BTreeMap::new();
        match r.period {
            None => {
                for (id, a) in &attributed {
                    won.insert(*id, (a.deals.won, a.won.clone()));
                }
            }
            Some(period) => {
                for (group, currency, count, amount, _) in sales
                    .closed(ctx, &period, Some(Dim::Campaign), None, "won", vec![])
                    .await?
                {
                    let Some(id) = group.map(|g| g.parse::<CampaignId>()).transpose()? else {
                        continue;
                    };
                    if !costs.contains_key(&id) {
                        continue;
                    }
                    let e = won.entry(id).or_default();
                    e.0 += count;
                    if let Some(currency) = currency {
                        e.1.push(CurrencyTotal {
                            currency,
                            units: amount,
                        });
                    }
                }
            }
        }
        let digits = conv.digits();
        let mut out = vec![];
        for (id, (name, cost)) in costs {
            let a = attributed.get(&id).cloned().unwrap_or_default();
            let (won_count, totals) = won.remove(&id).unwrap_or_default();
            let mut revenue = Decimal::ZERO;
            for t in totals {
                let v = conv.convert(ctx, t.currency, t.units, 4).await?;
                revenue = revenue.checked_add(v).ok_or_else(too_large)?;
            }
            out.push(RoiRow {
                campaign: id,
                name,
                cost,
                revenue,
                roi: RoiRow::roi_of(revenue, cost, digits),
                leads: a.leads,
                deals: a.deals.open + a.deals.won + a.deals.lost,
                won: won_count,
            });
        }
        sort_roi_rows(&mut out);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Report;

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    fn fields(text: &str) -> Vec<String> {
        let e = Report::from_json(text).expect_err("invalid");
        e.validation_errors()
            .expect("validation")
            .errors
            .iter()
            .map(|f| f.field.clone())
            .collect()
    }

    #[test]
    fn definitions_round_trip() {
        let p = Period::new(d("2026-01-01"), d("2026-03-31")).expect("period");
        for r in [
            Report::LeadFunnel(LeadFunnel {
                period: p,
                by: None,
            }),
            Report::LeadFunnel(LeadFunnel {
                period: p,
                by: Some(LeadDim::Campaign),
            }),
            Report::CampaignRoi(CampaignRoi {
                campaign: None,
                period: None,
                rate_date: None,
            }),
            Report::CampaignRoi(CampaignRoi {
                campaign: Some(CampaignId::new()),
                period: Some(p),
                rate_date: Some(d("2026-06-30")),
            }),
        ] {
            let json = r.to_json();
            assert_eq!(json["format"], 1);
            assert_eq!(json["report"], r.name());
            assert_eq!(Report::from_json(&json.to_string()).expect("parses"), r);
        }
        // Optional members may be left out.
        assert_eq!(
            Report::from_json(r#"{"format":1,"report":"campaign_roi"}"#).expect("parses"),
            Report::CampaignRoi(CampaignRoi {
                campaign: None,
                period: None,
                rate_date: None,
            })
        );
    }

    #[test]
    fn bad_parts_are_named() {
        assert_eq!(fields(r#"{"format":1,"report":"lead_funnel"}"#), ["period"]);
        assert_eq!(
            fields(
                r#"{"format":1,"report":"lead_funnel","period":{"from":"2026-01-01","to":"2026-02-01"},"by":"source"}"#
            ),
            ["by"]
        );
        assert_eq!(
            fields(
                r#"{"format":1,"report":"lead_funnel","period":{"from":"2026-02-01","to":"2026-01-01"},"by":"owner_id' OR 1=1--","rate_date":"2026-01-01"}"#
            ),
            ["period", "by", "rate_date"]
        );
        assert_eq!(
            fields(
                r#"{"format":1,"report":"campaign_roi","campaign":"42","period":{"from":"2026-01-01"},"rate_date":"2026-02-30"}"#
            ),
            ["campaign", "period.to", "rate_date"]
        );
        assert_eq!(
            fields(r#"{"format":1,"report":"campaign_roi","period":"2026","by":"owner"}"#),
            ["period", "by"]
        );
    }

    #[test]
    fn rows_from_counts() {
        let r = LeadFunnelRow::from_counts(Source::WebForm, None, [1, 0, 2, 0, 1, 2]);
        assert_eq!((r.created, r.nurturing, r.converted), (6, 2, 2));
        assert_eq!(r.conversion_rate, Some(Decimal::new(3333, 4)));
        let r = LeadFunnelRow::from_counts(Source::Other, None, [0; 6]);
        assert_eq!(r.conversion_rate, None);
        // 1/8 = 0.125 exactly; 5/16 = 0.3125; 1/32 = 0.03125 rounds half to even: 0.0312.
        let r = LeadFunnelRow::from_counts(Source::Event, None, [31, 0, 0, 0, 0, 1]);
        assert_eq!(r.conversion_rate, Some(Decimal::new(312, 4)));
        let r = LeadFunnelRow::from_counts(Source::Event, None, [0, 0, 0, 0, 27, 5]);
        assert_eq!(r.conversion_rate, Some(Decimal::new(1562, 4)));
    }

    #[test]
    fn roi_is_exact_and_none_without_cost() {
        let m = |s: &str| s.parse::<Decimal>().expect("decimal");
        assert_eq!(RoiRow::roi_of(m("300"), m("100"), 2), Some(m("2")));
        assert_eq!(RoiRow::roi_of(m("0"), m("100"), 2), Some(m("-1")));
        assert_eq!(RoiRow::roi_of(m("100"), m("0"), 2), None);
        assert_eq!(RoiRow::roi_of(m("400"), m("300"), 2), Some(m("0.3333")));
        // Midpoints round half to even: 4000.80 / 16000 = 0.25005, 4002.40 / 16000 = 0.25015.
        assert_eq!(
            RoiRow::roi_of(m("20000.80"), m("16000"), 2),
            Some(m("0.2500"))
        );
        assert_eq!(
            RoiRow::roi_of(m("20002.40"), m("16000"), 2),
            Some(m("0.2502"))
        );
        // Not a midpoint: 4000.09 / 16000 = 0.250005625.
        assert_eq!(
            RoiRow::roi_of(m("20000.09"), m("16000"), 2),
            Some(m("0.2500"))
        );
    }

    #[test]
    fn rows_are_ordered_by_source_then_group() {
        let row = |s, g: Option<&str>| LeadFunnelRow::from_counts(s, g.map(Into::into), [1; 6]);
        let mut v = vec![
            row(Source::Other, None),
            row(Source::WebForm, Some("b")),
            row(Source::Campaign, None),
            row(Source::WebForm, None),
            row(Source::WebForm, Some("a")),
        ];
        sort_lead_rows(&mut v);
        let got: Vec<_> = v.iter().map(|r| (r.source, r.group.clone())).collect();
        assert_eq!(
            got,
            vec![
                (Source::WebForm, None),
                (Source::WebForm, Some("a".into())),
                (Source::WebForm, Some("b".into())),
                (Source::Campaign, None),
                (Source::Other, None),
            ]
        );
    }
}
