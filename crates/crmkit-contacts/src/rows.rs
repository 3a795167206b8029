//! Tables, row encoding and queryable fields of the contacts module.

use crmkit_core::event::decode_timestamp;
use crmkit_core::query::{FieldSpec, FieldType, RecordFields};
use crmkit_core::row::{
    cell_json, cell_opt_text, cell_opt_timestamp, cell_str, cell_text, cell_timestamp, cell_uuid,
    from_json, json, opt_timestamp as opt_ts, take_opt_text as opt_text, take_text as text, uuid,
};
use crmkit_core::store::columns;
use crmkit_core::store::{CellRef, ColumnType, IndexDef, Row, RowRef, TableDef, Value};
use crmkit_core::text::fold;
use crmkit_core::{
    ContactId, Currency, Error, Money, OrganizationId, RecordKind, Result, TeamId, UserId,
    money::units_to_decimal,
};

use crate::model::{Consent, ConsentStatus, Contact, LifecycleStage, Organization};

/// The contacts table.
pub const PERSON_TABLE: &str = "contacts_person";
/// The organizations table.
pub const ORG_TABLE: &str = "contacts_organization";

const PERSON_COLUMNS: &[(&str, ColumnType, bool)] = {
    use ColumnType::*;
    &[
        ("id", Uuid, false),
        ("first_name", Text(100), false),
        ("first_fold", Text(100), false),
        ("last_name", Text(100), false),
        ("last_fold", Text(100), false),
        ("name_fold", Text(201), false),
        ("primary_email", Text(254), true),
        ("email_fold", Text(254), true),
        ("emails", LongText, false),
        ("primary_phone", Text(32), true),
        ("phones", LongText, false),
        ("job_title", Text(200), true),
        ("job_title_fold", Text(200), true),
        ("organization_id", Uuid, true),
        ("owner_id", Uuid, false),
        ("team_id", Uuid, true),
        ("lifecycle_stage", Text(32), false),
        ("consent_status", Text(16), false),
        ("consent_source", Text(100), true),
        ("consent_at", Timestamp, true),
        ("tags", LongText, false),
        ("custom", LongText, false),
        ("created_at", Timestamp, false),
        ("updated_at", Timestamp, false),
        ("deleted_at", Timestamp, true),
        ("version", Int, false),
    ]
};

const ORG_COLUMNS: &[(&str, ColumnType, bool)] = {
    use ColumnType::*;
    &[
        ("id", Uuid, false),
        ("name", Text(200), false),
        ("name_fold", Text(200), false),
        ("domain", Text(253), true),
        ("industry", Text(100), true),
        ("industry_fold", Text(100), true),
        ("employee_count", Int, true),
        ("annual_revenue", Decimal, true),
        ("revenue_currency", Text(3), true),
        ("phone", Text(32), true),
        ("website", Text(500), true),
        ("address", LongText, true),
        ("parent_id", Uuid, true),
        ("owner_id", Uuid, false),
        ("team_id", Uuid, true),
        ("tags", LongText, false),
        ("custom", LongText, false),
        ("created_at", Timestamp, false),
        ("updated_at", Timestamp, false),
        ("deleted_at", Timestamp, true),
        ("version", Int, false),
    ]
};

pub(crate) fn tables() -> Vec<TableDef> {
    vec![
        TableDef::new(PERSON_TABLE, columns(PERSON_COLUMNS), ["id"])
            .index(IndexDef::new(
                "contacts_person_owner",
                ["owner_id", "lifecycle_stage", "id"],
            ))
            .index(IndexDef::new("contacts_person_team", ["team_id", "id"]))
            .index(IndexDef::new("contacts_person_org", ["organization_id"]))
            .index(IndexDef::new("contacts_person_name", ["name_fold", "id"]))
            .index(IndexDef::new("contacts_person_email", ["email_fold"])),
        TableDef::new(ORG_TABLE, columns(ORG_COLUMNS), ["id"])
            .index(IndexDef::new("contacts_org_owner", ["owner_id", "id"]))
            .index(IndexDef::new("contacts_org_team", ["team_id", "id"]))
            .index(IndexDef::new("contacts_org_domain", ["domain"]))
            .index(IndexDef::new("contacts_org_parent", ["parent_id"]))
            .index(IndexDef::new("contacts_org_name", ["name_fold", "id"])),
    ]
}

/// Queryable contact fields.
pub const CONTACT_FIELDS: RecordFields = RecordFields {
    kind: RecordKind::CONTACT,
    table: PERSON_TABLE,
    fields: &[
        FieldSpec::new("id", FieldType::Uuid, false),
        FieldSpec::new("first_name", FieldType::Text, false).folded("first_fold"),
        FieldSpec::new("last_name", FieldType::Text, false).folded("last_fold"),
        FieldSpec::new("name", FieldType::Text, false)
            .in_column("name_fold")
            .folded("name_fold"),
        FieldSpec::new("email", FieldType::Text, true)
            .in_column("primary_email")
            .folded("email_fold"),
        FieldSpec::new("phone", FieldType::Text, true).in_column("primary_phone"),
        FieldSpec::new("job_title", FieldType::Text, true).folded("job_title_fold"),
        FieldSpec::new("organization", FieldType::Uuid, true).in_column("organization_id"),
        FieldSpec::new("owner", FieldType::Uuid, false).in_column("owner_id"),
        FieldSpec::new("team", FieldType::Uuid, true).in_column("team_id"),
        FieldSpec::new(
            "lifecycle_stage",
            FieldType::Enum(LifecycleStage::NAMES),
            false,
        ),
        FieldSpec::new(
            "consent_status",
            FieldType::Enum(ConsentStatus::NAMES),
            false,
        ),
        FieldSpec::new("consent_at", FieldType::Timestamp, true),
        FieldSpec::new("created_at", FieldType::Timestamp, false),
        FieldSpec::new("updated_at", FieldType::Timestamp, false),
        FieldSpec::new("deleted_at", FieldType::Timestamp, true),
    ],
    custom_column: Some("custom"),
};

/// Queryable organization fields.
pub const ORGANIZATION_FIELDS: RecordFields = RecordFields {
    kind: RecordKind::ORGANIZATION,
    table: ORG_TABLE,
    fields: &[
        FieldSpec::new("id", FieldType::Uuid, false),
        FieldSpec::new("name", FieldType::Text, false).folded("name_fold"),
        FieldSpec::new("domain", FieldType::Text, true).folded("domain"),
        FieldSpec::new("industry", FieldType::Text, true).folded("industry_fold"),
        FieldSpec::new("employee_count", FieldType::Int, true),
        FieldSpec::new("annual_revenue", FieldType::Decimal, true),
        FieldSpec::new("phone", FieldType::Text, true),
        FieldSpec::new("parent", FieldType::Uuid, true).in_column("parent_id"),
        FieldSpec::new("owner", FieldType::Uuid, false).in_column("owner_id"),
        FieldSpec::new("team", FieldType::Uuid, true).in_column("team_id"),
        FieldSpec::new("created_at", FieldType::Timestamp, false),
        FieldSpec::new("updated_at", FieldType::Timestamp, false),
        FieldSpec::new("deleted_at", FieldType::Timestamp, true),
    ],
    custom_column: Some("custom"),
};

pub(crate) fn full_name_fold(first: &str, last: &str) -> String {
    fold(&format!("{first} {last}"))
}

/// Row of a contact. Column order follows `PERSON_COLUMNS`.
pub(crate) fn contact_row(c: &Contact) -> Row {
    let email = c.primary_email();
    vec![
        Value::Uuid(c.id.as_uuid()),
        Value::Text(c.first_name.clone()),
        Value::Text(fold(&c.first_name)),
        Value::Text(c.last_name.clone()),
        Value::Text(fold(&c.last_name)),
        Value::Text(full_name_fold(&c.first_name, &c.last_name)),
        Value::opt_text(email),
        Value::opt_text(email.map(fold)),
        json(&c.emails),
        Value::opt_text(c.phones.first().map(|p| p.number.clone())),
        json(&c.phones),
        Value::opt_text(c.job_title.clone()),
        Value::opt_text(c.job_title.as_deref().map(fold)),
        Value::opt_uuid(c.organization),
        Value::Uuid(c.owner.as_uuid()),
        Value::opt_uuid(c.team),
        Value::Text(c.lifecycle_stage.as_str().into()),
        Value::Text(c.consent.status.as_str().into()),
        Value::opt_text(c.consent.source.clone()),
        Value::opt_timestamp(c.consent.at),
        json(&c.tags),
        json(&c.custom),
        Value::timestamp(c.created_at),
        Value::timestamp(c.updated_at),
        Value::opt_timestamp(c.deleted_at),
        Value::Int(c.version as i64),
    ]
}

pub(crate) fn decode_contact(r: Vec<Value>) -> Result<Contact> {
    let cells: Vec<CellRef<'_>> = r.iter().map(Value::as_cell).collect();
    decode_contact_cells(&cells)
}

/// A contact from its row as the backend hands it over: cells read in place are decoded
/// without building a [`Row`] first.
pub(crate) fn decode_contact_row(r: RowRef<'_>) -> Result<Contact> {
    match r {
        RowRef::Cells(cells) => decode_contact_cells(cells),
        RowRef::Owned(row) => decode_contact(row),
    }
}

fn decode_contact_cells(r: &[CellRef<'_>]) -> Result<Contact> {
    let bad = |what: &str| Error::storage(format!("malformed contact row: {what}"));
    if r.len() != PERSON_COLUMNS.len() {
        return Err(bad("columns"));
    }
    Ok(Contact {
        id: ContactId::from_uuid(cell_uuid(&r[0])?),
        first_name: cell_text(&r[1])?,
        last_name: cell_text(&r[3])?,
        emails: cell_json(&r[8])?,
        phones: cell_json(&r[10])?,
        job_title: cell_opt_text(&r[11]),
        organization: r[13].as_uuid().map(OrganizationId::from_uuid),
        owner: UserId::from_uuid(cell_uuid(&r[14])?),
        team: r[15].as_uuid().map(TeamId::from_uuid),
        lifecycle_stage: LifecycleStage::parse(cell_str(&r[16])?)
            .ok_or_else(|| bad("lifecycle_stage"))?,
        consent: Consent {
            status: ConsentStatus::parse(cell_str(&r[17])?).ok_or_else(|| bad("consent_status"))?,
            source: cell_opt_text(&r[18]),
            at: cell_opt_timestamp(&r[19])?,
        },
        tags: cell_json(&r[20])?,
        custom: cell_json(&r[21])?,
        created_at: cell_timestamp(&r[22])?,
        updated_at: cell_timestamp(&r[23])?,
        deleted_at: cell_opt_timestamp(&r[24])?,
        version: r[25].as_int().ok_or_else(|| bad("version"))? as u64,
    })
}

pub(crate) fn org_row(o: &Organization) -> Result<Row> {
    Ok(vec![
        Value::Uuid(o.id.as_uuid()),
        Value::Text(o.name.clone()),
        Value::Text(fold(&o.name)),
        Value::opt_text(o.domain.clone()),
        Value::opt_text(o.industry.clone()),
        Value::opt_text(o.industry.as_deref().map(fold)),
        Value::opt_int(o.employee_count),
        match &o.annual_revenue {
            Some(m) => Value::Int(m.to_storage_units()?),
            None => Value::Null,
        },
        Value::opt_text(o.annual_revenue.map(|m| m.currency().code())),
        Value::opt_text(o.phone.clone()),
        Value::opt_text(o.website.clone()),
        match &o.address {
            Some(a) => json(a),
            None => Value::Null,
        },
        Value::opt_uuid(o.parent),
        Value::Uuid(o.owner.as_uuid()),
        Value::opt_uuid(o.team),
        json(&o.tags),
        json(&o.custom),
        Value::timestamp(o.created_at),
        Value::timestamp(o.updated_at),
        Value::opt_timestamp(o.deleted_at),
        Value::Int(o.version as i64),
    ])
}

pub(crate) fn decode_org(mut r: Vec<Value>) -> Result<Organization> {
    let revenue = match (&r[7], &r[8]) {
        (Value::Int(units), Value::Text(code)) => Some(Money::new(
            units_to_decimal(*units),
            Currency::parse(code)?,
        )?),
        _ => None,
    };
    Ok(Organization {
        id: OrganizationId::from_uuid(uuid(&r[0])?),
        name: text(&mut r[1])?,
        domain: opt_text(&mut r[3]),
        industry: opt_text(&mut r[4]),
        employee_count: r[6].as_int(),
        annual_revenue: revenue,
        phone: opt_text(&mut r[9]),
        website: opt_text(&mut r[10]),
        address: if r[11].is_null() {
            None
        } else {
            Some(from_json(&r[11])?)
        },
        parent: r[12].as_uuid().map(OrganizationId::from_uuid),
        owner: UserId::from_uuid(uuid(&r[13])?),
        team: r[14].as_uuid().map(TeamId::from_uuid),
        tags: from_json(&r[15])?,
        custom: from_json(&r[16])?,
        created_at: decode_timestamp(&r[17])?,
        updated_at: decode_timestamp(&r[18])?,
        deleted_at: opt_ts(&r[19])?,
        version: r[20]
            .as_int()
            .ok_or_else(|| Error::storage("malformed organization row: version"))?
            as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_columns_exist() {
        let tables = tables();
        for (fields, table) in [
            (&CONTACT_FIELDS, &tables[0]),
            (&ORGANIZATION_FIELDS, &tables[1]),
        ] {
            for f in fields.fields {
                assert!(
                    table.position(f.column).is_some(),
                    "{}.{}",
                    table.name,
                    f.column
                );
                if let Some(c) = f.fold_column {
                    assert!(table.position(c).is_some(), "{}.{c}", table.name);
                }
            }
        }
    }
}
