//! The tenant's reporting settings: the time zone reports bucket instants in and the
//! first month of the fiscal year.
//!
//! They are kept in this module's own settings table (`analytics_setting`, one versioned
//! row per tenant, like the pipeline module's `pipeline_setting` keeps the base currency):
//! every actor reads them, only an Admin changes them, each change is audited (record kind
//! `analytics_settings`, the tenant's id) and emits `analytics.settings_set`. A tenant
//! that never set them reports in UTC with a fiscal year starting in January.

use chrono_tz::Tz;
use crmkit_core::store::{ColumnDef, ColumnType, TableDef, Value, Write};
use crmkit_core::{
    AuditChange, Changeset, Ctx, Error, NewEvent, RecordKind, RecordRef, Result, Store,
    ValidationErrors,
};
use serde::{Deserialize, Serialize};

/// The settings table of the analytics module (`key` → JSON `value`).
pub const SETTINGS_TABLE: &str = "analytics_setting";

/// The record kind of the reporting settings (audit entries and events; the record id is
/// the tenant's id).
pub const REPORT_SETTINGS: RecordKind = RecordKind::new("analytics_settings");

const KEY: &str = "reporting";

pub(crate) fn tables() -> Vec<TableDef> {
    use ColumnType::*;
    vec![TableDef::new(
        SETTINGS_TABLE,
        vec![
            ColumnDef::required("key", Text(64)),
            ColumnDef::required("value", Text(255)),
            ColumnDef::required("updated_at", Timestamp),
            ColumnDef::required("version", Int),
        ],
        ["key"],
    )]
}

/// The reporting settings of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportSettings {
    /// The IANA time zone instants are bucketed in (`"Europe/Berlin"`).
    pub time_zone: String,
    /// The fiscal year's first month, 1 (January) to 12.
    pub fiscal_year_start: u32,
    /// Version of the stored settings (0 while the defaults apply).
    #[serde(default)]
    pub version: u64,
}

impl Default for ReportSettings {
    fn default() -> Self {
        ReportSettings {
            time_zone: "UTC".into(),
            fiscal_year_start: 1,
            version: 0,
        }
    }
}

impl ReportSettings {
    /// The time zone, parsed.
    pub fn tz(&self) -> Result<Tz> {
        crmkit_core::directory::parse_time_zone("time_zone", &self.time_zone)
    }
}

fn record(ctx: &Ctx) -> RecordRef {
    RecordRef::new(REPORT_SETTINGS, ctx.tenant().as_uuid())
}

/// The tenant's settings (the defaults when none are stored).
pub(crate) async fn load(store: &Store, ctx: &Ctx) -> Result<ReportSettings> {
    let row = store
        .backend()
        .get(ctx.tenant(), SETTINGS_TABLE, &[Value::Text(KEY.into())])
        .await?;
    match row {
        None => Ok(ReportSettings::default()),
        Some(r) => {
            let bad = || Error::storage("malformed analytics setting row");
            let mut s: ReportSettings = serde_json::from_str(r[1].as_text().ok_or_else(bad)?)
                .map_err(|e| Error::storage_from("analytics settings", e))?;
            s.version = r[3].as_int().ok_or_else(bad)? as u64;
            Ok(s)
        }
    }
}

/// Stores the settings (Admin only) if they differ, versioned against `expected_version`.
pub(crate) async fn save(
    store: &Store,
    ctx: &Ctx,
    time_zone: &str,
    fiscal_year_start: u32,
    expected_version: u64,
) -> Result<ReportSettings> {
    ctx.actor().require_admin("set reporting settings")?;
    let mut errs = ValidationErrors::new();
    errs.check(crmkit_core::directory::parse_time_zone(
        "time_zone",
        time_zone,
    ));
    if !(1..=12).contains(&fiscal_year_start) {
        errs.push("fiscal_year_start", "must be a month from 1 to 12");
    }
    errs.into_result()?;
    let old = load(store, ctx).await?;
    if old.version != expected_version {
        return Err(Error::conflict(record(ctx), expected_version, old.version));
    }
    let new = ReportSettings {
        time_zone: time_zone.to_owned(),
        fiscal_year_start,
        version: old.version + 1,
    };
    if old.time_zone == new.time_zone && old.fiscal_year_start == new.fiscal_year_start {
        return Ok(old);
    }
    let value = serde_json::json!({
        "time_zone": new.time_zone,
        "fiscal_year_start": new.fiscal_year_start,
    })
    .to_string();
    let key = vec![Value::Text(KEY.into())];
    let now = ctx.now();
    let mut cs = Changeset::new(ctx);
    if old.version == 0 {
        cs.writes.push(Write::Insert {
            table: SETTINGS_TABLE,
            row: vec![
                key[0].clone(),
                Value::Text(value),
                Value::timestamp(now),
                Value::Int(1),
            ],
        });
    } else {
        cs.writes.push(Write::Update {
            table: SETTINGS_TABLE,
            key,
            set: vec![
                ("value", Value::Text(value)),
                ("updated_at", Value::timestamp(now)),
            ],
            expect_version: Some(old.version),
            record: record(ctx),
        });
    }
    let mut fields = vec![];
    for (field, o, n) in [
        (
            "time_zone",
            serde_json::json!(old.time_zone),
            serde_json::json!(new.time_zone),
        ),
        (
            "fiscal_year_start",
            serde_json::json!(old.fiscal_year_start),
            serde_json::json!(new.fiscal_year_start),
        ),
    ] {
        if o != n {
            fields.push(field.to_owned());
            cs.audit.push(AuditChange {
                record: record(ctx),
                field: field.into(),
                old: Some(o.to_string()),
                new: Some(n.to_string()),
            });
        }
    }
    cs.events.push(NewEvent::new(
        "analytics.settings_set",
        record(ctx),
        fields,
        serde_json::to_value(&new).map_err(|e| Error::storage_from("analytics settings", e))?,
    ));
    match store.commit(cs).await {
        // Two first settings raced: the other one won.
        Err(Error::Duplicate { .. }) => Err(Error::conflict(record(ctx), 0, 1)),
        other => other.map(|_| new),
    }
}
