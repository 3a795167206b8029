//! The cross-module lookup index: normalised email addresses and phone numbers to the
//! records that carry them. Contacts, organizations and leads write it; activities (call
//! logging) and tickets (the call-centre path) read it, so no module needs a sibling just
//! to find a record.

use crate::error::Result;
use crate::id::{RecordKind, RecordRef, TenantId};
use crate::store::{
    Backend, ColumnDef, ColumnType, Cond, IndexDef, OrderKey, Select, TableDef, Value, Write,
};

/// The lookup table.
pub const TABLE: &str = "crm_lookup";

/// What a lookup entry indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupKind {
    /// An email match key ([`crate::text::Email::key`]).
    Email,
    /// A phone number in E.164.
    Phone,
}

impl LookupKind {
    fn as_str(self) -> &'static str {
        match self {
            LookupKind::Email => "email",
            LookupKind::Phone => "phone",
        }
    }
}

pub(crate) fn tables() -> Vec<TableDef> {
    use ColumnType::*;
    vec![
        TableDef::new(
            TABLE,
            [
                ColumnDef::required("kind", Text(16)),
                ColumnDef::required("value", Text(255)),
                ColumnDef::required("record_kind", Text(64)),
                ColumnDef::required("record_id", Uuid),
                ColumnDef::optional("claim", Text(255)),
            ],
            ["kind", "value", "record_kind", "record_id"],
        )
        .index(IndexDef::unique(
            "crm_lookup_claim",
            ["kind", "record_kind", "claim"],
        ))
        .index(IndexDef::new(
            "crm_lookup_record",
            ["record_kind", "record_id"],
        )),
    ]
}

/// Writes that index `values` for `record`, replacing what it had. With `exclusive`, the
/// values are claimed: a second exclusive claim of the same value for the same record kind
/// fails the commit with a Duplicate error (this is what makes concurrent creates of the
/// same email give exactly one record).
pub fn index_writes(
    record: &RecordRef,
    kind: LookupKind,
    values: &[String],
    exclusive: bool,
    replace: bool,
) -> Vec<Write> {
    let mut out = vec![];
    if replace {
        out.push(Write::DeleteWhere {
            table: TABLE,
            cond: Cond::eq("kind", kind.as_str())
                .and(Cond::eq("record_kind", record.kind.as_str()))
                .and(Cond::eq("record_id", record.id)),
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for v in values {
        if !seen.insert(v) {
            continue;
        }
        out.push(Write::Insert {
            table: TABLE,
            row: vec![
                Value::Text(kind.as_str().into()),
                Value::Text(v.clone()),
                Value::Text(record.kind.as_str().into()),
                Value::Uuid(record.id),
                if exclusive {
                    Value::Text(v.clone())
                } else {
                    Value::Null
                },
            ],
        });
    }
    out
}

/// Writes that remove every entry of `record`.
pub fn remove_writes(record: &RecordRef) -> Write {
    Write::DeleteWhere {
        table: TABLE,
        cond: Cond::eq("record_kind", record.kind.as_str()).and(Cond::eq("record_id", record.id)),
    }
}

/// Records of `record_kind` (or any kind) whose indexed value equals `value`, oldest first.
pub async fn find(
    backend: &dyn Backend,
    tenant: TenantId,
    kind: LookupKind,
    value: &str,
    record_kind: Option<&RecordKind>,
    limit: u32,
) -> Result<Vec<RecordRef>> {
    let mut cond = Cond::eq("kind", kind.as_str()).and(Cond::eq("value", value));
    if let Some(k) = record_kind {
        cond = cond.and(Cond::eq("record_kind", k.as_str()));
    }
    rows_to_refs(backend, tenant, cond, limit).await
}

/// Records whose indexed value starts with `prefix` (already normalised).
pub async fn find_prefix(
    backend: &dyn Backend,
    tenant: TenantId,
    kind: LookupKind,
    prefix: &str,
    record_kind: &RecordKind,
    limit: u32,
) -> Result<Vec<RecordRef>> {
    let cond = Cond::eq("kind", kind.as_str())
        .and(Cond::StartsWith("value".into(), prefix.to_owned()))
        .and(Cond::eq("record_kind", record_kind.as_str()));
    rows_to_refs(backend, tenant, cond, limit).await
}

async fn rows_to_refs(
    backend: &dyn Backend,
    tenant: TenantId,
    cond: Cond,
    limit: u32,
) -> Result<Vec<RecordRef>> {
    let mut s = Select::new(TABLE, cond);
    s.order = vec![OrderKey::asc("record_id"), OrderKey::asc("value")];
    s.limit = Some(limit);
    let rows = backend.select(tenant, &s).await?;
    let mut out: Vec<RecordRef> = vec![];
    for r in rows {
        let (Some(k), Some(id)) = (r[2].as_text(), r[3].as_uuid()) else {
            continue;
        };
        let rr = RecordRef::new(RecordKind::parse(k)?, id);
        if !out.contains(&rr) {
            out.push(rr);
        }
    }
    Ok(out)
}
