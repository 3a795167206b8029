//! Tables, row encoding and queryable fields of pipelines, stages and deals.

use crmkit_core::event::decode_timestamp;
use crmkit_core::query::{FieldSpec, FieldType, RecordFields};
use crmkit_core::row::{
    date_value, from_json, int, json, money_cells as amount_values, opt_date, opt_money as money,
    opt_timestamp as opt_ts, take_opt_text as opt_text, take_text as text, uuid,
};
use crmkit_core::store::columns;
use crmkit_core::store::{ColumnType, IndexDef, Row, TableDef, Value};
use crmkit_core::text::fold;
use crmkit_core::{
    CampaignId, ContactId, Currency, DealId, Error, LostReasonId, Money, OrganizationId,
    PipelineId, RecordKind, Result, StageId, TeamId, UserId,
};

use super::{
    CloseDateChange, Deal, DealRole, LostReason, Pipeline, Source, Stage, StageChange, StageKind,
};

/// The pipelines table.
pub const PIPELINE_TABLE: &str = "pipeline_pipelines";
/// The stages table.
pub const STAGE_TABLE: &str = "pipeline_stages";
/// The deals table.
pub const DEAL_TABLE: &str = "pipeline_deals";
/// The deal-contact links table.
pub const DEAL_CONTACT_TABLE: &str = "pipeline_deal_contacts";
/// The append-only stage history table.
pub const HISTORY_TABLE: &str = "pipeline_stage_history";
/// The managed lost reasons table.
pub const LOST_REASON_TABLE: &str = "pipeline_lost_reasons";
/// The append-only history of expected close date changes (migration 2; see
/// [`super::CloseDateChange`]).
pub const CLOSE_HISTORY_TABLE: &str = "pipeline_close_history";

type Cols = &'static [(&'static str, ColumnType, bool)];

const PIPELINE_COLUMNS: Cols = {
    use ColumnType::*;
    &[
        ("id", Uuid, false),
        ("name", Text(100), false),
        ("currency", Text(3), true),
        ("is_default", Bool, false),
        // 1 for the default pipeline, NULL otherwise: a unique index makes it a claim.
        ("default_claim", Int, true),
        ("position", Int, false),
        ("created_at", Timestamp, false),
        ("updated_at", Timestamp, false),
        ("version", Int, false),
        ("deleted_at", Timestamp, true),
    ]
};

const STAGE_COLUMNS: Cols = {
    use ColumnType::*;
    &[
        ("id", Uuid, false),
        ("pipeline_id", Uuid, false),
        ("name", Text(100), false),
        ("position", Int, false),
        ("probability", Int, false),
        ("kind", Text(8), false),
        ("rotting_days", Int, true),
        ("required_fields", LongText, false),
        ("removed_at", Timestamp, true),
    ]
};

const DEAL_COLUMNS: Cols = {
    use ColumnType::*;
    &[
        ("id", Uuid, false),
        ("title", Text(200), false),
        ("title_fold", Text(200), false),
        ("amount", Decimal, true),
        ("currency", Text(3), true),
        ("weighted_x100", Int, true),
        ("expected_close", Date, true),
        ("pipeline_id", Uuid, false),
        ("stage_id", Uuid, false),
        ("status", Text(8), false),
        ("owner_id", Uuid, false),
        ("team_id", Uuid, true),
        ("organization_id", Uuid, true),
        ("contacts", LongText, false),
        ("source", Text(32), false),
        ("campaign_id", Uuid, true),
        ("probability_override", Int, true),
        ("probability", Int, false),
        ("next_step", Text(500), true),
        ("lost_reason", Text(500), true),
        ("lost_reason_id", Uuid, true),
        ("won_at", Timestamp, true),
        ("lost_at", Timestamp, true),
        ("stage_entered_at", Timestamp, false),
        ("history_seq", Int, false),
        ("custom", LongText, false),
        ("created_at", Timestamp, false),
        ("updated_at", Timestamp, false),
        ("deleted_at", Timestamp, true),
        ("version", Int, false),
    ]
};

const DEAL_CONTACT_COLUMNS: Cols = {
    use ColumnType::*;
    &[
        ("deal_id", Uuid, false),
        ("contact_id", Uuid, false),
        ("role", Text(32), false),
    ]
};

const HISTORY_COLUMNS: Cols = {
    use ColumnType::*;
    &[
        ("deal_id", Uuid, false),
        ("seq", Int, false),
        ("pipeline_id", Uuid, false),
        ("from_stage", Uuid, true),
        ("to_stage", Uuid, false),
        ("to_kind", Text(8), false),
        ("amount", Decimal, true),
        ("currency", Text(3), true),
        ("expected_close", Date, true),
        ("at", Timestamp, false),
        ("by_user", Uuid, true),
        ("seconds_in_previous", Int, true),
    ]
};

const CLOSE_HISTORY_COLUMNS: Cols = {
    use ColumnType::*;
    &[
        ("deal_id", Uuid, false),
        ("deal_version", Int, false),
        ("pipeline_id", Uuid, false),
        ("owner_id", Uuid, false),
        ("team_id", Uuid, true),
        ("from_close", Date, true),
        ("to_close", Date, true),
        ("days", Int, true),
        ("at", Timestamp, false),
        ("by_user", Uuid, true),
    ]
};

const LOST_REASON_COLUMNS: Cols = {
    use ColumnType::*;
    &[
        ("id", Uuid, false),
        ("name", Text(200), false),
        ("name_fold", Text(200), false),
        ("created_at", Timestamp, false),
    ]
};

pub(crate) fn tables() -> Vec<TableDef> {
    vec![
        TableDef::new(PIPELINE_TABLE, columns(PIPELINE_COLUMNS), ["id"]).index(IndexDef::unique(
            "pipeline_pipelines_default",
            ["default_claim"],
        )),
        TableDef::new(STAGE_TABLE, columns(STAGE_COLUMNS), ["id"]).index(IndexDef::new(
            "pipeline_stages_pipeline",
            ["pipeline_id", "position"],
        )),
        TableDef::new(DEAL_TABLE, columns(DEAL_COLUMNS), ["id"])
            .index(IndexDef::new(
                "pipeline_deals_summary",
                ["pipeline_id", "status", "stage_id", "currency"],
            ))
            .index(IndexDef::new("pipeline_deals_owner", ["owner_id", "id"]))
            .index(IndexDef::new("pipeline_deals_team", ["team_id", "id"]))
            .index(IndexDef::new(
                "pipeline_deals_close",
                ["status", "expected_close"],
            ))
            .index(IndexDef::new(
                "pipeline_deals_stage",
                ["stage_id", "stage_entered_at"],
            ))
            .index(IndexDef::new("pipeline_deals_org", ["organization_id"]))
            .index(IndexDef::new("pipeline_deals_campaign", ["campaign_id"]))
            .index(IndexDef::new("pipeline_deals_title", ["title_fold", "id"])),
        TableDef::new(
            DEAL_CONTACT_TABLE,
            columns(DEAL_CONTACT_COLUMNS),
            ["deal_id", "contact_id"],
        )
        .index(IndexDef::new(
            "pipeline_deal_contacts_contact",
            ["contact_id"],
        )),
        TableDef::new(HISTORY_TABLE, columns(HISTORY_COLUMNS), ["deal_id", "seq"]).index(
            IndexDef::new("pipeline_stage_history_to", ["to_stage", "at"]),
        ),
        TableDef::new(LOST_REASON_TABLE, columns(LOST_REASON_COLUMNS), ["id"]).index(
            IndexDef::unique("pipeline_lost_reasons_name", ["name_fold"]),
        ),
    ]
}

/// The close-date history table (created by the pipeline module's migration 2, keyed by
/// deal and the deal's version after the change).
pub(crate) fn close_history_table() -> TableDef {
    TableDef::new(
        CLOSE_HISTORY_TABLE,
        columns(CLOSE_HISTORY_COLUMNS),
        ["deal_id", "deal_version"],
    )
}

/// The deals' indexes by status and closing instant (pipeline migration 3): a period's
/// won or lost deals are one index range.
pub fn closed_indexes() -> Vec<IndexDef> {
    vec![
        IndexDef::new("pipeline_deals_won", ["status", "won_at"]),
        IndexDef::new("pipeline_deals_lost", ["status", "lost_at"]),
    ]
}

/// Queryable deal fields (and `custom.<key>`). `status` is `open`, `won` or `lost`;
/// `amount` compares the amount whatever its currency (filter on `currency` too).
pub const DEAL_FIELDS: RecordFields = RecordFields {
    kind: RecordKind::DEAL,
    table: DEAL_TABLE,
    fields: &[
        FieldSpec::new("id", FieldType::Uuid, false),
        FieldSpec::new("title", FieldType::Text, false).folded("title_fold"),
        FieldSpec::new("pipeline", FieldType::Uuid, false).in_column("pipeline_id"),
        FieldSpec::new("stage", FieldType::Uuid, false).in_column("stage_id"),
        FieldSpec::new("status", FieldType::Enum(StageKind::NAMES), false),
        FieldSpec::new("owner", FieldType::Uuid, false).in_column("owner_id"),
        FieldSpec::new("team", FieldType::Uuid, true).in_column("team_id"),
        FieldSpec::new("organization", FieldType::Uuid, true).in_column("organization_id"),
        FieldSpec::new("amount", FieldType::Decimal, true),
        FieldSpec::new("currency", FieldType::Text, true),
        FieldSpec::new("probability", FieldType::Int, false),
        FieldSpec::new("expected_close", FieldType::Date, true),
        FieldSpec::new("won_at", FieldType::Timestamp, true),
        FieldSpec::new("lost_at", FieldType::Timestamp, true),
        FieldSpec::new("stage_entered_at", FieldType::Timestamp, false),
        FieldSpec::new("campaign", FieldType::Uuid, true).in_column("campaign_id"),
        FieldSpec::new("source", FieldType::Enum(Source::NAMES), false),
        FieldSpec::new("created_at", FieldType::Timestamp, false),
        FieldSpec::new("updated_at", FieldType::Timestamp, false),
        FieldSpec::new("deleted_at", FieldType::Timestamp, true),
    ],
    custom_column: Some("custom"),
};

/// Queryable pipeline fields (pipelines have no custom fields). A pipeline's stages are
/// part of it, not a kind of their own: filter deals on `stage` instead.
pub const PIPELINE_FIELDS: RecordFields = RecordFields {
    kind: super::PIPELINE_KIND,
    table: PIPELINE_TABLE,
    fields: &[
        FieldSpec::new("id", FieldType::Uuid, false),
        FieldSpec::new("name", FieldType::Text, false),
        FieldSpec::new("currency", FieldType::Text, true),
        FieldSpec::new("is_default", FieldType::Bool, false),
        FieldSpec::new("created_at", FieldType::Timestamp, false),
        FieldSpec::new("updated_at", FieldType::Timestamp, false),
    ],
    custom_column: None,
};

/// `weighted_x100` of a deal: its amount in storage units (10^-4) times its effective
/// probability (0-100), so that the weighted value is `weighted_x100 / 10^6`, exactly.
pub(crate) fn weighted_x100(amount: &Option<Money>, probability: u8) -> Result<Value> {
    Ok(match amount {
        Some(m) => Value::Int(
            m.to_storage_units()?
                .checked_mul(i64::from(probability))
                .ok_or_else(|| Error::validation("amount", "is too large"))?,
        ),
        None => Value::Null,
    })
}

pub(crate) fn pipeline_row(p: &Pipeline, position: i64) -> Row {
    vec![
        Value::Uuid(p.id.as_uuid()),
        Value::Text(p.name.clone()),
        Value::opt_text(p.currency.map(|c| c.code())),
        Value::from(p.is_default),
        if p.is_default {
            Value::Int(1)
        } else {
            Value::Null
        },
        Value::Int(position),
        Value::timestamp(p.created_at),
        Value::timestamp(p.updated_at),
        Value::Int(p.version as i64),
        Value::Null,
    ]
}

/// A pipeline without its stages, and its position.
pub(crate) fn decode_pipeline(mut r: Row) -> Result<(Pipeline, i64)> {
    let currency = match opt_text(&mut r[2]) {
        Some(c) => Some(Currency::parse(&c)?),
        None => None,
    };
    Ok((
        Pipeline {
            id: PipelineId::from_uuid(uuid(&r[0])?),
            name: text(&mut r[1])?,
            currency,
            is_default: int(&r[3])? == 1,
            stages: vec![],
            created_at: decode_timestamp(&r[6])?,
            updated_at: decode_timestamp(&r[7])?,
            version: int(&r[8])? as u64,
        },
        int(&r[5])?,
    ))
}

pub(crate) fn stage_row(s: &Stage) -> Row {
    vec![
        Value::Uuid(s.id.as_uuid()),
        Value::Uuid(s.pipeline.as_uuid()),
        Value::Text(s.name.clone()),
        Value::Int(i64::from(s.position)),
        Value::Int(i64::from(s.probability)),
        Value::Text(s.kind.as_str().into()),
        Value::opt_int(s.rotting_days.map(i64::from)),
        json(&s.required_fields),
        Value::Null,
    ]
}

/// A stage and whether it was removed.
pub(crate) fn decode_stage(mut r: Row) -> Result<(Stage, bool)> {
    let bad = |w: &str| Error::storage(format!("malformed stage row: {w}"));
    Ok((
        Stage {
            id: StageId::from_uuid(uuid(&r[0])?),
            pipeline: PipelineId::from_uuid(uuid(&r[1])?),
            name: text(&mut r[2])?,
            position: u32::try_from(int(&r[3])?).map_err(|_| bad("position"))?,
            probability: u8::try_from(int(&r[4])?).map_err(|_| bad("probability"))?,
            kind: StageKind::parse(&text(&mut r[5])?).ok_or_else(|| bad("kind"))?,
            rotting_days: match r[6].as_int() {
                Some(d) => Some(u32::try_from(d).map_err(|_| bad("rotting_days"))?),
                None => None,
            },
            required_fields: from_json(&r[7])?,
        },
        !r[8].is_null(),
    ))
}

pub(crate) fn deal_row(d: &Deal, history_seq: i64) -> Result<Row> {
    let (amount, currency) = amount_values(&d.amount)?;
    let status = if d.won_at.is_some() {
        StageKind::Won
    } else if d.lost_at.is_some() {
        StageKind::Lost
    } else {
        StageKind::Open
    };
    Ok(vec![
        Value::Uuid(d.id.as_uuid()),
        Value::Text(d.title.clone()),
        Value::Text(fold(&d.title)),
        amount,
        currency,
        weighted_x100(&d.amount, d.probability)?,
        date_value(d.expected_close),
        Value::Uuid(d.pipeline.as_uuid()),
        Value::Uuid(d.stage.as_uuid()),
        Value::Text(status.as_str().into()),
        Value::Uuid(d.owner.as_uuid()),
        Value::opt_uuid(d.team),
        Value::opt_uuid(d.organization),
        json(&d.contacts),
        Value::Text(d.source.as_str().into()),
        Value::opt_uuid(d.campaign),
        Value::opt_int(d.probability_override.map(i64::from)),
        Value::Int(i64::from(d.probability)),
        Value::opt_text(d.next_step.clone()),
        Value::opt_text(d.lost_reason.clone()),
        Value::opt_uuid(d.lost_reason_id),
        Value::opt_timestamp(d.won_at),
        Value::opt_timestamp(d.lost_at),
        Value::timestamp(d.stage_entered_at),
        Value::Int(history_seq),
        json(&d.custom),
        Value::timestamp(d.created_at),
        Value::timestamp(d.updated_at),
        Value::opt_timestamp(d.deleted_at),
        Value::Int(d.version as i64),
    ])
}

/// A deal and the sequence number of its last stage-history entry.
pub(crate) fn decode_deal(mut r: Row) -> Result<(Deal, i64)> {
    let bad = |w: &str| Error::storage(format!("malformed deal row: {w}"));
    let deal = Deal {
        id: DealId::from_uuid(uuid(&r[0])?),
        title: text(&mut r[1])?,
        amount: money(&r[3], &r[4])?,
        expected_close: opt_date(&r[6])?,
        pipeline: PipelineId::from_uuid(uuid(&r[7])?),
        stage: StageId::from_uuid(uuid(&r[8])?),
        owner: UserId::from_uuid(uuid(&r[10])?),
        team: r[11].as_uuid().map(TeamId::from_uuid),
        organization: r[12].as_uuid().map(OrganizationId::from_uuid),
        contacts: from_json(&r[13])?,
        source: Source::parse(&text(&mut r[14])?).ok_or_else(|| bad("source"))?,
        campaign: r[15].as_uuid().map(CampaignId::from_uuid),
        probability_override: match r[16].as_int() {
            Some(p) => Some(u8::try_from(p).map_err(|_| bad("probability_override"))?),
            None => None,
        },
        probability: u8::try_from(int(&r[17])?).map_err(|_| bad("probability"))?,
        next_step: opt_text(&mut r[18]),
        lost_reason: opt_text(&mut r[19]),
        lost_reason_id: r[20].as_uuid().map(LostReasonId::from_uuid),
        won_at: opt_ts(&r[21])?,
        lost_at: opt_ts(&r[22])?,
        stage_entered_at: decode_timestamp(&r[23])?,
        custom: from_json(&r[25])?,
        created_at: decode_timestamp(&r[26])?,
        updated_at: decode_timestamp(&r[27])?,
        deleted_at: opt_ts(&r[28])?,
        version: int(&r[29])? as u64,
    };
    Ok((deal, int(&r[24])?))
}

pub(crate) fn contact_link_row(deal: DealId, contact: ContactId, role: DealRole) -> Row {
    vec![
        Value::Uuid(deal.as_uuid()),
        Value::Uuid(contact.as_uuid()),
        Value::Text(role.as_str().into()),
    ]
}

pub(crate) fn history_row(h: &StageChange) -> Result<Row> {
    let (amount, currency) = amount_values(&h.amount)?;
    Ok(vec![
        Value::Uuid(h.deal.as_uuid()),
        Value::Int(h.seq as i64),
        Value::Uuid(h.pipeline.as_uuid()),
        Value::opt_uuid(h.from_stage),
        Value::Uuid(h.to_stage.as_uuid()),
        Value::Text(h.to_kind.as_str().into()),
        amount,
        currency,
        date_value(h.expected_close),
        Value::timestamp(h.at),
        Value::opt_uuid(h.by),
        Value::opt_int(h.seconds_in_previous),
    ])
}

pub(crate) fn decode_history(r: Row) -> Result<StageChange> {
    Ok(StageChange {
        deal: DealId::from_uuid(uuid(&r[0])?),
        seq: int(&r[1])? as u64,
        pipeline: PipelineId::from_uuid(uuid(&r[2])?),
        from_stage: r[3].as_uuid().map(StageId::from_uuid),
        to_stage: StageId::from_uuid(uuid(&r[4])?),
        to_kind: StageKind::parse(r[5].as_text().unwrap_or_default())
            .ok_or_else(|| Error::storage("malformed history row: to_kind"))?,
        amount: money(&r[6], &r[7])?,
        expected_close: opt_date(&r[8])?,
        at: decode_timestamp(&r[9])?,
        by: r[10].as_uuid().map(UserId::from_uuid),
        seconds_in_previous: r[11].as_int(),
    })
}

pub(crate) fn close_history_row(c: &CloseDateChange) -> Row {
    vec![
        Value::Uuid(c.deal.as_uuid()),
        Value::Int(c.version as i64),
        Value::Uuid(c.pipeline.as_uuid()),
        Value::Uuid(c.owner.as_uuid()),
        Value::opt_uuid(c.team),
        date_value(c.from),
        date_value(c.to),
        Value::opt_int(c.days_later),
        Value::timestamp(c.at),
        Value::opt_uuid(c.by),
    ]
}

pub(crate) fn decode_close_history(r: Row) -> Result<CloseDateChange> {
    Ok(CloseDateChange {
        deal: DealId::from_uuid(uuid(&r[0])?),
        version: int(&r[1])? as u64,
        pipeline: PipelineId::from_uuid(uuid(&r[2])?),
        owner: UserId::from_uuid(uuid(&r[3])?),
        team: r[4].as_uuid().map(TeamId::from_uuid),
        from: opt_date(&r[5])?,
        to: opt_date(&r[6])?,
        days_later: r[7].as_int(),
        at: decode_timestamp(&r[8])?,
        by: r[9].as_uuid().map(UserId::from_uuid),
    })
}

pub(crate) fn lost_reason_row(l: &LostReason) -> Row {
    vec![
        Value::Uuid(l.id.as_uuid()),
        Value::Text(l.name.clone()),
        Value::Text(fold(l.name.trim())),
        Value::timestamp(l.created_at),
    ]
}

pub(crate) fn decode_lost_reason(mut r: Row) -> Result<LostReason> {
    Ok(LostReason {
        id: LostReasonId::from_uuid(uuid(&r[0])?),
        name: text(&mut r[1])?,
        created_at: decode_timestamp(&r[3])?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_columns_exist() {
        let p = &tables()[0];
        for f in PIPELINE_FIELDS.fields {
            assert!(p.position(f.column).is_some(), "{}", f.column);
        }
        let t = &tables()[2];
        for f in DEAL_FIELDS.fields {
            assert!(t.position(f.column).is_some(), "{}", f.column);
            if let Some(c) = f.fold_column {
                assert!(t.position(c).is_some(), "{c}");
            }
        }
    }
}

crmkit_core::stored_record!(
    Deal,
    crmkit_core::DealId,
    crmkit_core::RecordKind::DEAL,
    DEAL_TABLE,
    |row| decode_deal(row).map(|(deal, _seq)| deal)
);
