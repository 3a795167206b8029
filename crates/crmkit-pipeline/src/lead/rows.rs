//! The lead table, its row encoding and its queryable fields.

use crmkit_core::event::decode_timestamp;
use crmkit_core::query::{FieldSpec, FieldType, RecordFields};
use crmkit_core::row::{
    from_json, json, opt_timestamp as opt_ts, take_opt_text as opt_text, take_text as text,
};
use crmkit_core::store::{ColumnDef, ColumnType, IndexDef, Row, TableDef, Value};
use crmkit_core::text::fold;
use crmkit_core::{
    CampaignId, ContactId, DealId, Error, LeadId, OrganizationId, RecordKind, Result, TeamId,
    UserId,
};

use super::model::{Lead, LeadStatus};
use crate::deal::Source;

/// The leads table.
pub const LEAD_TABLE: &str = "pipeline_lead";

/// Stored names of [`Source`], in declaration order ([`Source::NAMES`]).
pub const SOURCE_NAMES: &[&str] = Source::NAMES;

/// The stored name of a source (its serde name).
pub fn source_name(s: Source) -> String {
    match serde_json::to_value(s) {
        Ok(serde_json::Value::String(n)) => n,
        _ => "other".into(),
    }
}

/// A source from its stored name.
pub fn parse_source(s: &str) -> Option<Source> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
}

const LEAD_COLUMNS: &[(&str, ColumnType, bool)] = {
    use ColumnType::*;
    &[
        ("id", Uuid, false),
        ("first_name", Text(100), false),
        ("last_name", Text(100), false),
        ("name_fold", Text(201), false),
        ("job_title", Text(200), true),
        ("company", Text(200), true),
        ("company_fold", Text(200), true),
        ("domain", Text(253), true),
        ("website", Text(500), true),
        ("employee_count", Int, true),
        ("primary_email", Text(254), true),
        ("email_fold", Text(254), true),
        ("emails", LongText, false),
        ("primary_phone", Text(32), true),
        ("phones", LongText, false),
        ("source", Text(32), false),
        ("status", Text(16), false),
        ("disqualified_reason", Text(500), true),
        ("owner_id", Uuid, false),
        ("team_id", Uuid, true),
        ("campaign_id", Uuid, true),
        ("score", Int, false),
        ("custom", LongText, false),
        ("contact_id", Uuid, true),
        ("organization_id", Uuid, true),
        ("deal_id", Uuid, true),
        ("converted_at", Timestamp, true),
        ("created_at", Timestamp, false),
        ("updated_at", Timestamp, false),
        ("deleted_at", Timestamp, true),
        ("version", Int, false),
    ]
};

pub(crate) fn tables() -> Vec<TableDef> {
    let columns: Vec<ColumnDef> = LEAD_COLUMNS
        .iter()
        .map(|&(n, t, nullable)| {
            if nullable {
                ColumnDef::optional(n, t)
            } else {
                ColumnDef::required(n, t)
            }
        })
        .collect();
    vec![
        TableDef::new(LEAD_TABLE, columns, ["id"])
            .index(IndexDef::new(
                "pipeline_lead_owner",
                ["owner_id", "status", "id"],
            ))
            .index(IndexDef::new("pipeline_lead_team", ["team_id", "id"]))
            .index(IndexDef::new("pipeline_lead_status", ["status", "id"]))
            .index(IndexDef::new(
                "pipeline_lead_campaign",
                ["campaign_id", "id"],
            ))
            .index(IndexDef::new("pipeline_lead_name", ["name_fold", "id"]))
            .index(IndexDef::new("pipeline_lead_email", ["email_fold"]))
            .index(IndexDef::new(
                "pipeline_lead_company",
                ["company_fold", "id"],
            ))
            .index(IndexDef::new("pipeline_lead_score", ["score", "id"]))
            .index(IndexDef::new("pipeline_lead_created", ["created_at", "id"])),
    ]
}

/// Queryable lead fields (and `custom.<key>` for custom fields of kind `lead`).
pub const LEAD_FIELDS: RecordFields = RecordFields {
    kind: RecordKind::LEAD,
    table: LEAD_TABLE,
    fields: &[
        FieldSpec::new("id", FieldType::Uuid, false),
        FieldSpec::new("first_name", FieldType::Text, false),
        FieldSpec::new("last_name", FieldType::Text, false),
        FieldSpec::new("name", FieldType::Text, false)
            .in_column("name_fold")
            .folded("name_fold"),
        FieldSpec::new("email", FieldType::Text, true)
            .in_column("primary_email")
            .folded("email_fold"),
        FieldSpec::new("phone", FieldType::Text, true).in_column("primary_phone"),
        FieldSpec::new("company", FieldType::Text, true).folded("company_fold"),
        FieldSpec::new("domain", FieldType::Text, true).folded("domain"),
        FieldSpec::new("employee_count", FieldType::Int, true),
        FieldSpec::new("source", FieldType::Enum(SOURCE_NAMES), false),
        FieldSpec::new("status", FieldType::Enum(LeadStatus::NAMES), false),
        FieldSpec::new("owner", FieldType::Uuid, false).in_column("owner_id"),
        FieldSpec::new("team", FieldType::Uuid, true).in_column("team_id"),
        FieldSpec::new("campaign", FieldType::Uuid, true).in_column("campaign_id"),
        FieldSpec::new("score", FieldType::Int, false),
        FieldSpec::new("converted_contact", FieldType::Uuid, true).in_column("contact_id"),
        FieldSpec::new("converted_organization", FieldType::Uuid, true)
            .in_column("organization_id"),
        FieldSpec::new("converted_deal", FieldType::Uuid, true).in_column("deal_id"),
        FieldSpec::new("converted_at", FieldType::Timestamp, true),
        FieldSpec::new("created_at", FieldType::Timestamp, false),
        FieldSpec::new("updated_at", FieldType::Timestamp, false),
        FieldSpec::new("deleted_at", FieldType::Timestamp, true),
    ],
    custom_column: Some("custom"),
};

/// The row of a lead, in the column order of the table.
pub(crate) fn lead_row(l: &Lead) -> Row {
    let email = l.primary_email();
    vec![
        Value::Uuid(l.id.as_uuid()),
        Value::Text(l.first_name.clone()),
        Value::Text(l.last_name.clone()),
        Value::Text(fold(&format!("{} {}", l.first_name, l.last_name))),
        Value::opt_text(l.job_title.clone()),
        Value::opt_text(l.company.clone()),
        Value::opt_text(l.company.as_deref().map(fold)),
        Value::opt_text(l.domain.clone()),
        Value::opt_text(l.website.clone()),
        Value::opt_int(l.employee_count),
        Value::opt_text(email),
        Value::opt_text(email.map(fold)),
        json(&l.emails),
        Value::opt_text(l.phones.first().map(|p| p.number.clone())),
        json(&l.phones),
        Value::Text(source_name(l.source)),
        Value::Text(l.status.as_str().into()),
        Value::opt_text(l.disqualified_reason.clone()),
        Value::Uuid(l.owner.as_uuid()),
        Value::opt_uuid(l.team),
        Value::opt_uuid(l.campaign),
        Value::Int(l.score),
        json(&l.custom),
        Value::opt_uuid(l.converted_contact),
        Value::opt_uuid(l.converted_organization),
        Value::opt_uuid(l.converted_deal),
        Value::opt_timestamp(l.converted_at),
        Value::timestamp(l.created_at),
        Value::timestamp(l.updated_at),
        Value::opt_timestamp(l.deleted_at),
        Value::Int(l.version as i64),
    ]
}

/// Decodes a row of the lead table.
pub(crate) fn decode_lead(mut r: Vec<Value>) -> Result<Lead> {
    let bad = |what: &str| Error::storage(format!("malformed lead row: {what}"));
    let uuid = |v: &Value, what: &str| v.as_uuid().ok_or_else(|| bad(what));
    Ok(Lead {
        id: LeadId::from_uuid(uuid(&r[0], "id")?),
        first_name: text(&mut r[1])?,
        last_name: text(&mut r[2])?,
        job_title: opt_text(&mut r[4]),
        company: opt_text(&mut r[5]),
        domain: opt_text(&mut r[7]),
        website: opt_text(&mut r[8]),
        employee_count: r[9].as_int(),
        emails: from_json(&r[12])?,
        phones: from_json(&r[14])?,
        source: parse_source(&text(&mut r[15])?).ok_or_else(|| bad("source"))?,
        status: LeadStatus::parse(&text(&mut r[16])?).ok_or_else(|| bad("status"))?,
        disqualified_reason: opt_text(&mut r[17]),
        owner: UserId::from_uuid(uuid(&r[18], "owner_id")?),
        team: r[19].as_uuid().map(TeamId::from_uuid),
        campaign: r[20].as_uuid().map(CampaignId::from_uuid),
        score: r[21].as_int().ok_or_else(|| bad("score"))?,
        custom: from_json(&r[22])?,
        converted_contact: r[23].as_uuid().map(ContactId::from_uuid),
        converted_organization: r[24].as_uuid().map(OrganizationId::from_uuid),
        converted_deal: r[25].as_uuid().map(DealId::from_uuid),
        converted_at: opt_ts(&r[26])?,
        created_at: decode_timestamp(&r[27])?,
        updated_at: decode_timestamp(&r[28])?,
        deleted_at: opt_ts(&r[29])?,
        version: r[30].as_int().ok_or_else(|| bad("version"))? as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_columns_exist() {
        let tables = tables();
        let table = &tables[0];
        for f in LEAD_FIELDS.fields {
            assert!(table.position(f.column).is_some(), "{}", f.column);
            if let Some(c) = f.fold_column {
                assert!(table.position(c).is_some(), "{c}");
            }
        }
    }

    #[test]
    fn source_names_follow_serde() {
        for (i, n) in SOURCE_NAMES.iter().enumerate() {
            let s = parse_source(n).expect("known source");
            assert_eq!(source_name(s), *n, "#{i}");
        }
        assert!(parse_source("nope").is_none());
    }
}

crmkit_core::stored_record!(
    Lead,
    crmkit_core::LeadId,
    crmkit_core::RecordKind::LEAD,
    LEAD_TABLE,
    decode_lead
);
