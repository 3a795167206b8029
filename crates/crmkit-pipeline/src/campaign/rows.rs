//! Tables, row encoding and queryable fields of campaigns and campaign members.

use crmkit_core::event::decode_timestamp;
use crmkit_core::query::{FieldSpec, FieldType, RecordFields};
use crmkit_core::row::{
    date_value, json, money_cells, opt_date, opt_money, opt_timestamp as opt_ts,
    take_opt_text as opt_text, take_text as text, uuid,
};
use crmkit_core::store::columns;
use crmkit_core::store::{ColumnType, IndexDef, Row, TableDef, Value};
use crmkit_core::text::fold;
use crmkit_core::{
    CampaignId, CampaignMemberId, Error, RecordKind, RecordRef, Result, TeamId, UserId,
};

use super::{Campaign, CampaignKind, CampaignMember, CampaignStatus, MemberStatus};

/// The campaigns table.
pub const CAMPAIGN_TABLE: &str = "pipeline_campaign";
/// The campaign members table.
pub const MEMBER_TABLE: &str = "pipeline_campaign_member";

/// The record kind of campaigns (`campaign`, as [`CampaignId::kind`]).
pub const CAMPAIGN: RecordKind = RecordKind::new("campaign");
/// The record kind of campaign memberships (audit entries, events, member lists).
pub const CAMPAIGN_MEMBER: RecordKind = RecordKind::new("campaign_member");

const CAMPAIGN_COLUMNS: &[(&str, ColumnType, bool)] = {
    use ColumnType::*;
    &[
        ("id", Uuid, false),
        ("name", Text(200), false),
        ("name_fold", Text(200), false),
        ("kind", Text(16), false),
        ("status", Text(16), false),
        ("start_date", Date, true),
        ("end_date", Date, true),
        ("budget", Decimal, true),
        ("budget_currency", Text(3), true),
        ("actual_cost", Decimal, true),
        ("cost_currency", Text(3), true),
        ("expected_revenue", Decimal, true),
        ("revenue_currency", Text(3), true),
        ("description", LongText, true),
        ("owner_id", Uuid, false),
        ("team_id", Uuid, true),
        ("custom", LongText, false),
        ("created_at", Timestamp, false),
        ("updated_at", Timestamp, false),
        ("deleted_at", Timestamp, true),
        ("version", Int, false),
    ]
};

const MEMBER_COLUMNS: &[(&str, ColumnType, bool)] = {
    use ColumnType::*;
    &[
        ("id", Uuid, false),
        ("campaign_id", Uuid, false),
        ("member_kind", Text(16), false),
        ("member_id", Uuid, false),
        ("status", Text(16), false),
        ("added_at", Timestamp, false),
        ("updated_at", Timestamp, false),
        ("version", Int, false),
    ]
};

pub(crate) fn tables() -> Vec<TableDef> {
    vec![
        TableDef::new(CAMPAIGN_TABLE, columns(CAMPAIGN_COLUMNS), ["id"])
            .index(IndexDef::new(
                "pipeline_campaign_owner",
                ["owner_id", "status", "id"],
            ))
            .index(IndexDef::new("pipeline_campaign_team", ["team_id", "id"]))
            .index(IndexDef::new("pipeline_campaign_name", ["name_fold", "id"]))
            .index(IndexDef::new(
                "pipeline_campaign_dates",
                ["start_date", "end_date"],
            )),
        TableDef::new(MEMBER_TABLE, columns(MEMBER_COLUMNS), ["id"])
            .index(IndexDef::unique(
                "pipeline_campaign_member_unique",
                ["campaign_id", "member_kind", "member_id"],
            ))
            .index(IndexDef::new(
                "pipeline_campaign_member_page",
                ["campaign_id", "id"],
            ))
            .index(IndexDef::new(
                "pipeline_campaign_member_of",
                ["member_kind", "member_id"],
            )),
    ]
}

/// Queryable campaign fields (plus `custom.<key>`). Money fields compare amounts only
/// (whatever their currency): filter on them together with a currency-fixed population.
pub const CAMPAIGN_FIELDS: RecordFields = RecordFields {
    kind: CAMPAIGN,
    table: CAMPAIGN_TABLE,
    fields: &[
        FieldSpec::new("id", FieldType::Uuid, false),
        FieldSpec::new("name", FieldType::Text, false).folded("name_fold"),
        FieldSpec::new("kind", FieldType::Enum(CampaignKind::NAMES), false),
        FieldSpec::new("status", FieldType::Enum(CampaignStatus::NAMES), false),
        FieldSpec::new("start_date", FieldType::Date, true),
        FieldSpec::new("end_date", FieldType::Date, true),
        FieldSpec::new("budget", FieldType::Decimal, true),
        FieldSpec::new("budget_currency", FieldType::Text, true),
        FieldSpec::new("actual_cost", FieldType::Decimal, true),
        FieldSpec::new("expected_revenue", FieldType::Decimal, true),
        FieldSpec::new("owner", FieldType::Uuid, false).in_column("owner_id"),
        FieldSpec::new("team", FieldType::Uuid, true).in_column("team_id"),
        FieldSpec::new("created_at", FieldType::Timestamp, false),
        FieldSpec::new("updated_at", FieldType::Timestamp, false),
        FieldSpec::new("deleted_at", FieldType::Timestamp, true),
    ],
    custom_column: Some("custom"),
};

/// Queryable member fields (for [`super::Campaigns::list_members`]).
pub const MEMBER_FIELDS: RecordFields = RecordFields {
    kind: CAMPAIGN_MEMBER,
    table: MEMBER_TABLE,
    fields: &[
        FieldSpec::new("id", FieldType::Uuid, false),
        FieldSpec::new("member_kind", FieldType::Enum(&["lead", "contact"]), false),
        FieldSpec::new("member_id", FieldType::Uuid, false),
        FieldSpec::new("status", FieldType::Enum(MemberStatus::NAMES), false),
        FieldSpec::new("added_at", FieldType::Timestamp, false),
        FieldSpec::new("updated_at", FieldType::Timestamp, false),
    ],
    custom_column: None,
};

/// The row of a campaign, in `CAMPAIGN_COLUMNS` order.
pub(crate) fn campaign_row(c: &Campaign) -> Result<Row> {
    let (budget, budget_cur) = money_cells(&c.budget)?;
    let (cost, cost_cur) = money_cells(&c.actual_cost)?;
    let (rev, rev_cur) = money_cells(&c.expected_revenue)?;
    Ok(vec![
        Value::Uuid(c.id.as_uuid()),
        Value::Text(c.name.clone()),
        Value::Text(fold(&c.name)),
        Value::Text(c.kind.as_str().into()),
        Value::Text(c.status.as_str().into()),
        date_value(c.start_date),
        date_value(c.end_date),
        budget,
        budget_cur,
        cost,
        cost_cur,
        rev,
        rev_cur,
        Value::opt_text(c.description.clone()),
        Value::Uuid(c.owner.as_uuid()),
        Value::opt_uuid(c.team),
        json(&c.custom),
        Value::timestamp(c.created_at),
        Value::timestamp(c.updated_at),
        Value::opt_timestamp(c.deleted_at),
        Value::Int(c.version as i64),
    ])
}

pub(crate) fn decode_campaign(mut r: Vec<Value>) -> Result<Campaign> {
    let bad = |w: &str| Error::storage(format!("malformed campaign row: {w}"));
    Ok(Campaign {
        id: CampaignId::from_uuid(uuid(&r[0])?),
        name: text(&mut r[1])?,
        kind: CampaignKind::parse(&text(&mut r[3])?).ok_or_else(|| bad("kind"))?,
        status: CampaignStatus::parse(&text(&mut r[4])?).ok_or_else(|| bad("status"))?,
        start_date: opt_date(&r[5])?,
        end_date: opt_date(&r[6])?,
        budget: opt_money(&r[7], &r[8])?,
        actual_cost: opt_money(&r[9], &r[10])?,
        expected_revenue: opt_money(&r[11], &r[12])?,
        description: opt_text(&mut r[13]),
        owner: UserId::from_uuid(uuid(&r[14])?),
        team: r[15].as_uuid().map(TeamId::from_uuid),
        custom: serde_json::from_str(r[16].as_text().ok_or_else(|| bad("custom"))?)
            .map_err(|e| Error::storage_from("malformed campaign row: custom", e))?,
        created_at: decode_timestamp(&r[17])?,
        updated_at: decode_timestamp(&r[18])?,
        deleted_at: opt_ts(&r[19])?,
        version: r[20].as_int().ok_or_else(|| bad("version"))? as u64,
    })
}

/// The row of a membership, in `MEMBER_COLUMNS` order.
pub(crate) fn member_row(m: &CampaignMember) -> Row {
    vec![
        Value::Uuid(m.id.as_uuid()),
        Value::Uuid(m.campaign.as_uuid()),
        Value::Text(m.member.kind.as_str().to_owned()),
        Value::Uuid(m.member.id),
        Value::Text(m.status.as_str().into()),
        Value::timestamp(m.added_at),
        Value::timestamp(m.updated_at),
        Value::Int(m.version as i64),
    ]
}

pub(crate) fn decode_member(mut r: Vec<Value>) -> Result<CampaignMember> {
    let bad = |w: &str| Error::storage(format!("malformed campaign member row: {w}"));
    Ok(CampaignMember {
        id: CampaignMemberId::from_uuid(uuid(&r[0])?),
        campaign: CampaignId::from_uuid(uuid(&r[1])?),
        member: RecordRef::new(RecordKind::parse(&text(&mut r[2])?)?, uuid(&r[3])?),
        status: MemberStatus::parse(&text(&mut r[4])?).ok_or_else(|| bad("status"))?,
        added_at: decode_timestamp(&r[5])?,
        updated_at: decode_timestamp(&r[6])?,
        version: r[7].as_int().ok_or_else(|| bad("version"))? as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_columns_exist() {
        let tables = tables();
        for (fields, table) in [(&CAMPAIGN_FIELDS, &tables[0]), (&MEMBER_FIELDS, &tables[1])] {
            for f in fields.fields {
                assert!(table.position(f.column).is_some(), "{}", f.column);
                if let Some(c) = f.fold_column {
                    assert!(table.position(c).is_some(), "{c}");
                }
            }
        }
        assert_eq!(tables[0].columns.len(), CAMPAIGN_COLUMNS.len());
    }
}

crmkit_core::stored_record!(
    Campaign,
    crmkit_core::CampaignId,
    CAMPAIGN,
    CAMPAIGN_TABLE,
    decode_campaign
);
