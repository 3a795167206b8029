//! The storage-contract suite: checks that any [`Backend`] keeps the contract of
//! [`crmkit_core::store`], on a test module of its own ([`KitModule`]).
//!
//! Every check is a public `async fn(Arc<dyn Backend>) -> Result<()>` that works in fresh
//! random tenants, so checks can share a database and run concurrently. A check panics
//! with a message naming the broken rule when the backend violates the contract, and
//! returns `Err` when the backend fails where the contract allows no failure. Open the
//! backend with [`modules`] (the core module plus [`KitModule`]); [`checks`] lists every
//! check by name, and [`model_differential`] is the model-based property test against the
//! in-memory reference backend.
//!
//! What is covered:
//! - byte-exact round trips of hostile and unicode text, extreme integers and NULLs
//!   ([`round_trip`]);
//! - optimistic versions, NotFound, deletes ([`versions_and_deletes`]);
//! - primary-key and unique-index collisions and that a failed commit leaves no trace
//!   ([`unique_and_primary_keys`]);
//! - atomicity under a fault injected before every write of a commit
//!   ([`atomicity_under_faults`]);
//! - the per-tenant gap-free event sequence, also under 16 concurrent committers and a
//!   polling reader ([`event_sequence`], [`concurrent_event_sequence`]);
//! - tenant isolation, differentially ([`tenant_isolation`]);
//! - select semantics: three-valued logic, text matching, byte-wise order, keyset paging,
//!   limits, aggregates, unknown identifiers and custom fields.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use crmkit_core::custom::VALUES_TABLE;
use crmkit_core::event::{AUDIT_TABLE, EVENTS_TABLE, SEQUENCES_TABLE};
use crmkit_core::memory::MemoryBackend;
use crmkit_core::store::{
    Aggregate, Buckets, CmpOp, ColumnDef, ColumnType, Cond, CustomRef, IndexDef, Measure,
    Migration, OrderKey, Row, SchemaStep, Select, TableDef, Value, Write,
};
use crmkit_core::{
    Actor, AuditChange, Backend, Changeset, Commit, Ctx, Error, Fault, Module, Modules, NewEvent,
    RecordKind, RecordRef, Result, Role, Store, TenantId, UserId,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// The test module
// ---------------------------------------------------------------------------------------

/// The items table of [`KitModule`]: `id` (UUID key), `name` (text 255), `name_fold`
/// (text 255), `qty` (nullable int), `amount` (decimal), `tag` (nullable text 32, unique
/// per tenant), `version` (int) and, since migration 2, `note` (nullable long text).
pub const ITEMS: &str = "kit_items";
/// The pairs table of [`KitModule`]: key (`a` UUID, `b` int), `label` (nullable text 64,
/// unique together with `a`), `body` (nullable long text).
pub const PAIRS: &str = "kit_pairs";
/// The record kind of an item (events, audit entries, custom fields).
pub const ITEM_KIND: RecordKind = RecordKind::new(ITEM_KIND_NAME);
/// The name of [`ITEM_KIND`].
pub const ITEM_KIND_NAME: &str = "kit_item";

/// A module with the tables the storage suite writes, in two migrations (the second adds a
/// column and an index, so backends replay `AddColumn` and `CreateIndex` too).
#[derive(Debug, Clone, Copy, Default)]
pub struct KitModule;

impl Module for KitModule {
    fn name(&self) -> &'static str {
        "kit"
    }

    fn migrations(&self) -> Vec<Migration> {
        use ColumnType::*;
        vec![
            Migration {
                version: 1,
                description: "items and pairs",
                steps: vec![
                    SchemaStep::CreateTable(
                        TableDef::new(
                            ITEMS,
                            [
                                ColumnDef::required("id", Uuid),
                                ColumnDef::required("name", Text(255)),
                                ColumnDef::required("name_fold", Text(255)),
                                ColumnDef::optional("qty", Int),
                                ColumnDef::required("amount", Decimal),
                                ColumnDef::optional("tag", Text(32)),
                                ColumnDef::required("version", Int),
                            ],
                            ["id"],
                        )
                        .index(IndexDef::unique("kit_items_tag", ["tag"]))
                        .index(IndexDef::new("kit_items_name", ["name", "id"])),
                    ),
                    SchemaStep::CreateTable(
                        TableDef::new(
                            PAIRS,
                            [
                                ColumnDef::required("a", Uuid),
                                ColumnDef::required("b", Int),
                                ColumnDef::optional("label", Text(64)),
                                ColumnDef::optional("body", LongText),
                            ],
                            ["a", "b"],
                        )
                        .index(IndexDef::unique("kit_pairs_label", ["a", "label"])),
                    ),
                ],
            },
            Migration {
                version: 2,
                description: "item notes, folded-name index",
                steps: vec![
                    SchemaStep::AddColumn {
                        table: ITEMS,
                        column: ColumnDef::optional("note", LongText),
                    },
                    SchemaStep::CreateIndex {
                        table: ITEMS,
                        index: IndexDef::new("kit_items_name_fold", ["name_fold"]),
                    },
                ],
            },
        ]
    }

    fn event_kinds(&self) -> Vec<&'static str> {
        vec!["kit_item.created", "kit_item.updated", "kit_item.deleted"]
    }
}

/// The modules to open a backend with for this suite: the core module and [`KitModule`].
pub fn modules() -> Result<Modules> {
    Modules::builder().add(KitModule).build()
}

// ---------------------------------------------------------------------------------------
// The list of checks
// ---------------------------------------------------------------------------------------

/// The future a check returns.
pub type CheckFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// A named check of the suite.
#[derive(Clone, Copy)]
pub struct Check {
    /// The check's name (its function's name).
    pub name: &'static str,
    /// Runs the check on a backend opened with [`modules`].
    pub run: fn(Arc<dyn Backend>) -> CheckFuture,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Every scenario check of the suite (not the property test, see [`model_differential`]).
pub fn checks() -> Vec<Check> {
    macro_rules! list {
        ($($f:ident),* $(,)?) => {
            vec![$(Check { name: stringify!($f), run: |b| Box::pin($f(b)) }),*]
        };
    }
    crate::storage_check_names!(list)
}

/// Calls macro `$then` with the names of the checks of
/// [`crate::storage::checks`]: the one list behind it and the conformance test files.
#[macro_export]
macro_rules! storage_check_names {
    ($then:ident) => {
        $then! {
            round_trip,
            versions_and_deletes,
            unique_and_primary_keys,
            atomicity_under_faults,
            event_sequence,
            concurrent_event_sequence,
            reserve_sequences,
            tenant_isolation,
            three_valued_logic,
            text_matching,
            text_order,
            keyset_paging,
            limit_and_count,
            aggregates,
            unknown_names,
            custom_fields,
        }
    };
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

const ID: usize = 0;
const NAME: usize = 1;
const QTY: usize = 3;
const TAG: usize = 5;

/// An item as the suite builds it.
#[derive(Debug, Clone, PartialEq)]
struct Item {
    id: Uuid,
    name: String,
    name_fold: String,
    qty: Option<i64>,
    amount: i64,
    tag: Option<String>,
    version: i64,
    note: Option<String>,
}

impl Item {
    fn new(id: Uuid, name: &str) -> Item {
        Item {
            id,
            name: name.to_owned(),
            name_fold: name.to_lowercase(),
            qty: None,
            amount: 0,
            tag: None,
            version: 1,
            note: None,
        }
    }

    fn qty(mut self, q: Option<i64>) -> Item {
        self.qty = q;
        self
    }

    fn amount(mut self, a: i64) -> Item {
        self.amount = a;
        self
    }

    fn tag(mut self, t: Option<&str>) -> Item {
        self.tag = t.map(str::to_owned);
        self
    }

    fn row(&self) -> Row {
        vec![
            Value::Uuid(self.id),
            Value::Text(self.name.clone()),
            Value::Text(self.name_fold.clone()),
            Value::opt_int(self.qty),
            Value::Int(self.amount),
            Value::opt_text(self.tag.clone()),
            Value::Int(self.version),
            Value::opt_text(self.note.clone()),
        ]
    }

    fn insert(&self) -> Write {
        Write::Insert {
            table: ITEMS,
            row: self.row(),
        }
    }
}

/// 2024-02-29T12:34:56.123456Z: a leap day with microseconds.
fn at() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(1_709_210_096_123_456).expect("valid instant")
}

fn changeset(tenant: TenantId, writes: Vec<Write>) -> Changeset {
    Changeset {
        tenant,
        actor: Some(UserId::new()),
        origin: "testkit".into(),
        at: at(),
        writes,
        audit: vec![],
        events: vec![],
        cause: None,
    }
}

fn item_ref(id: Uuid) -> RecordRef {
    RecordRef::new(ITEM_KIND, id)
}

fn event(kind: &str, id: Uuid, payload: serde_json::Value) -> NewEvent {
    NewEvent::new(kind, item_ref(id), vec!["name".into()], payload)
}

fn audit(id: Uuid, field: &str, old: Option<&str>, new: Option<&str>) -> AuditChange {
    AuditChange {
        record: item_ref(id),
        field: field.into(),
        old: old.map(str::to_owned),
        new: new.map(str::to_owned),
    }
}

fn key(id: Uuid) -> Vec<Value> {
    vec![Value::Uuid(id)]
}

fn update(id: Uuid, set: Vec<(&'static str, Value)>, expect_version: Option<u64>) -> Write {
    Write::Update {
        table: ITEMS,
        key: key(id),
        set,
        expect_version,
        record: item_ref(id),
    }
}

fn asc(column: &str) -> OrderKey {
    OrderKey::asc(column)
}

fn desc(column: &str) -> OrderKey {
    OrderKey::desc(column)
}

fn nulls_as(mut k: OrderKey, v: Value) -> OrderKey {
    k.null_as = Some(v);
    k
}

fn cmp(column: &str, op: CmpOp, v: impl Into<Value>) -> Cond {
    Cond::Cmp(column.into(), op, v.into())
}

fn not(c: Cond) -> Cond {
    Cond::Not(Box::new(c))
}

/// Ids that sort in the order of `i` (all tenants use the same ones, on purpose).
fn fixed_id(i: u128) -> Uuid {
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + (i << 16) + 0x2a)
}

async fn commit(b: &dyn Backend, cs: Changeset) -> Result<Commit> {
    b.commit(cs).await
}

async fn insert_items(b: &dyn Backend, tenant: TenantId, items: &[Item]) -> Result<Commit> {
    commit(
        b,
        changeset(tenant, items.iter().map(Item::insert).collect()),
    )
    .await
}

/// Every row of `table` in `tenant`, ordered by the given key columns.
async fn rows_of(b: &dyn Backend, tenant: TenantId, table: &'static str) -> Result<Vec<Row>> {
    let def = b.schema().table(table)?.clone();
    let mut s = Select::new(table, Cond::True);
    s.order = def.primary_key.iter().map(|c| asc(c)).collect();
    b.select(tenant, &s).await
}

async fn all_items(b: &dyn Backend, tenant: TenantId) -> Result<Vec<Row>> {
    rows_of(b, tenant, ITEMS).await
}

/// The ids of the items matching `cond`, sorted; checks that `count` agrees.
async fn ids_where(b: &dyn Backend, tenant: TenantId, cond: &Cond) -> Result<Vec<Uuid>> {
    let rows = b.select(tenant, &Select::new(ITEMS, cond.clone())).await?;
    let mut ids: Vec<Uuid> = rows.iter().map(|r| uuid_of(&r[ID])).collect();
    ids.sort();
    let n = b.count(tenant, ITEMS, cond).await?;
    assert_eq!(
        n,
        ids.len() as u64,
        "count and select disagree for {cond:?}"
    );
    Ok(ids)
}

fn uuid_of(v: &Value) -> Uuid {
    v.as_uuid()
        .unwrap_or_else(|| panic!("expected a UUID value, got {v:?}"))
}

fn sorted(mut ids: Vec<Uuid>) -> Vec<Uuid> {
    ids.sort();
    ids
}

/// Asserts which items match `cond` (by select and by count).
async fn expect_ids(
    b: &dyn Backend,
    tenant: TenantId,
    cond: Cond,
    expected: &[Uuid],
    what: &str,
) -> Result<()> {
    let got = ids_where(b, tenant, &cond).await?;
    assert_eq!(
        got,
        sorted(expected.to_vec()),
        "{what}: wrong rows for {cond:?}"
    );
    Ok(())
}

/// The order-key values of a row (NULLs replaced), as a keyset position.
fn sort_values(def: &TableDef, order: &[OrderKey], row: &Row) -> Vec<Value> {
    order
        .iter()
        .map(|o| {
            let v = row[def.position(&o.column).expect("known column")].clone();
            match (v, &o.null_as) {
                (Value::Null, Some(n)) => n.clone(),
                (v, _) => v,
            }
        })
        .collect()
}

fn order_cmp(order: &[OrderKey], a: &[Value], b: &[Value]) -> std::cmp::Ordering {
    for ((x, y), o) in a.iter().zip(b).zip(order) {
        let c = x.cmp(y);
        let c = if o.desc { c.reverse() } else { c };
        if c.is_ne() {
            return c;
        }
    }
    std::cmp::Ordering::Equal
}

/// The rows in the order a select with `order` must return them (computed here, not by a
/// backend).
fn expected_order(def: &TableDef, order: &[OrderKey], rows: &[Row]) -> Vec<Row> {
    let mut keyed: Vec<(Vec<Value>, Row)> = rows
        .iter()
        .map(|r| (sort_values(def, order, r), r.clone()))
        .collect();
    keyed.sort_by(|a, b| order_cmp(order, &a.0, &b.0));
    keyed.into_iter().map(|(_, r)| r).collect()
}

/// Reads every page of `select` (keyset paging with page size `page`) and concatenates
/// them, checking that no page is longer than asked for.
async fn read_pages(
    b: &dyn Backend,
    tenant: TenantId,
    select: &Select,
    page: u32,
) -> Result<Vec<Row>> {
    let def = b.schema().table(select.table)?.clone();
    let mut out: Vec<Row> = vec![];
    let mut s = select.clone();
    s.limit = Some(page);
    s.after = None;
    loop {
        let rows = b.select(tenant, &s).await?;
        assert!(
            rows.len() <= page as usize,
            "a page of size {page} returned {} rows",
            rows.len()
        );
        let Some(last) = rows.last() else { break };
        s.after = Some(sort_values(&def, &s.order, last));
        let done = rows.len() < page as usize;
        out.extend(rows);
        if done {
            break;
        }
        assert!(
            out.len() <= 100_000,
            "paging does not end (the keyset position does not advance?)"
        );
    }
    Ok(out)
}

fn admin_ctx(tenant: TenantId) -> Result<Ctx> {
    Ctx::new(tenant, Actor::new(UserId::new(), [Role::Admin], []))
}

/// Clears the injected fault when dropped (so a failing check leaves no fault behind).
struct FaultGuard<'a>(&'a dyn Backend);

impl Drop for FaultGuard<'_> {
    fn drop(&mut self) {
        self.0.inject_fault(None);
    }
}

/// Hostile and unusual strings that every backend must store byte-exact and compare
/// exactly (no case folding, no normalisation, no trailing-space padding). All are at most
/// 255 characters.
pub fn tricky_strings() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        " ",
        "a",
        "a ",
        " a",
        "A",
        "'",
        "''",
        "\"",
        "`",
        ";",
        "--",
        "/* */",
        "*/",
        "\\",
        "\\\\",
        "\\'",
        "' OR 1=1--",
        "\" OR \"\"=\"",
        "1; DROP TABLE x",
        "Robert'); DROP TABLE kit_items;--",
        "pg_sleep(5)",
        "%",
        "_",
        "100%_\\!",
        "$1",
        "?",
        ":name",
        "NULL",
        "null",
        "e\u{301}",
        "\u{e9}",
        "n\u{303}",
        "\u{f1}",
        "İ",
        "ı",
        "i",
        "I",
        "ß",
        "ss",
        "SS",
        "ẞ",
        "😀",
        "👩\u{200d}👩\u{200d}👧\u{200d}👦",
        "\u{202e}abc",
        "עברית",
        "日本語",
        "\t\r\n",
        "\u{feff}bom",
        "\u{200b}",
        "＝1+1",
        "<script>alert(1)</script>",
        "\u{10ffff}",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    v.push("x".repeat(255));
    v.push("é".repeat(255));
    v.push("😀".repeat(255));
    v.push(format!("{}'", "-".repeat(254)));
    v
}

// ---------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------

/// Text with SQL metacharacters, unicode (combining characters, Turkish dotted and dotless
/// i, ß, NFC and NFD pairs, emoji, RTL override) and 255-character strings, extreme
/// integers, NULLs and UUIDs round-trip byte-exact through insert, get and select; an
/// equality condition matches exactly one of them (no folding, normalising or padding).
pub async fn round_trip(backend: Arc<dyn Backend>) -> Result<()> {
    let b = &*backend;
    let t = TenantId::new();
    let ints = [
        Some(i64::MIN),
        Some(i64::MAX),
        None,
        Some(0),
        Some(-1),
        Some((1 << 53) + 1),
        Some(-(1 << 53) - 1),
    ];
    let strings = tricky_strings();
    let mut items = vec![];
    for (i, s) in strings.iter().enumerate() {
        let mut item = Item::new(Uuid::now_v7(), s);
        item.name_fold = strings[(i + 1) % strings.len()].clone();
        item.qty = ints[i % ints.len()];
        item.amount = ints[(i + 1) % ints.len()].unwrap_or(7);
        item.tag = (s.chars().count() <= 32).then(|| s.clone());
        item.version = ints[(i + 3) % ints.len()].unwrap_or(1);
        item.note = (i % 3 != 0).then(|| s.repeat(40));
        items.push(item);
    }
    let mut edge = Item::new(Uuid::from_u128(u128::MAX), "max uuid");
    edge.note = Some("x".repeat(70_000));
    items.push(edge);
    items.push(Item::new(Uuid::nil(), "nil uuid").tag(Some("nil")));
    insert_items(b, t, &items).await?;

    for item in &items {
        let got = b.get(t, ITEMS, &key(item.id)).await?;
        assert_eq!(
            got.as_ref(),
            Some(&item.row()),
            "get does not return the row as written (name {:?})",
            item.name
        );
        expect_ids(
            b,
            t,
            Cond::eq("name", item.name.as_str()),
            &[item.id],
            "name = value matches exactly that value",
        )
        .await?;
        if let Some(tag) = &item.tag {
            expect_ids(
                b,
                t,
                Cond::eq("tag", tag.as_str()),
                &[item.id],
                "tag = value matches exactly that value",
            )
            .await?;
        }
    }
    let mut expected: Vec<Row> = items.iter().map(Item::row).collect();
    expected.sort_by(|a, b| a[ID].cmp(&b[ID]));
    assert_eq!(
        all_items(b, t).await?,
        expected,
        "select returns different rows than were written"
    );
    // "" and NULL are different values.
    let empty = items.iter().find(|i| i.name.is_empty()).expect("listed");
    let nulls: Vec<Uuid> = items
        .iter()
        .filter(|i| i.tag.is_none())
        .map(|i| i.id)
        .collect();
    expect_ids(
        b,
        t,
        Cond::IsNull("tag".into()),
        &nulls,
        "IsNull matches NULL, not ''",
    )
    .await?;
    expect_ids(b, t, Cond::eq("tag", ""), &[empty.id], "'' is not NULL").await?;

    // Composite keys and long text.
    let a = Uuid::now_v7();
    let body: String = tricky_strings().concat().repeat(20);
    let pairs = vec![
        vec![
            Value::Uuid(a),
            Value::Int(i64::MIN),
            Value::Text("' OR 1=1--".into()),
            Value::Text(body.clone()),
        ],
        vec![
            Value::Uuid(a),
            Value::Int(i64::MAX),
            Value::Null,
            Value::Null,
        ],
        vec![
            Value::Uuid(a),
            Value::Int(0),
            Value::Text("😀".repeat(64)),
            Value::Text(String::new()),
        ],
    ];
    commit(
        b,
        changeset(
            t,
            pairs
                .iter()
                .map(|r| Write::Insert {
                    table: PAIRS,
                    row: r.clone(),
                })
                .collect(),
        ),
    )
    .await?;
    for p in &pairs {
        let got = b.get(t, PAIRS, &p[..2]).await?;
        assert_eq!(got.as_ref(), Some(p), "a kit_pairs row does not round-trip");
    }
    assert_eq!(
        b.get(t, PAIRS, &[Value::Uuid(a), Value::Int(1)]).await?,
        None,
        "get of a missing composite key"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Versions and deletes
// ---------------------------------------------------------------------------------------

/// Updates with `expect_version` bump the version; a stale version is a Conflict naming
/// expected and actual versions and changes nothing (not even the other writes of its
/// changeset); an update of a missing row is NotFound; Delete of an absent row is no error;
/// DeleteWhere deletes exactly the rows whose condition is true (not unknown); UpdateWhere
/// sets exactly those rows, in the tenant only, keeps versions, and refuses key columns.
pub async fn versions_and_deletes(backend: Arc<dyn Backend>) -> Result<()> {
    let b = &*backend;
    let t = TenantId::new();
    let (ia, ib, ic) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let a = Item::new(ia, "alpha").qty(Some(1)).tag(Some("a"));
    let bb = Item::new(ib, "beta").qty(Some(2));
    let c = Item::new(ic, "gamma");
    insert_items(b, t, &[a.clone(), bb.clone(), c.clone()]).await?;

    let r = commit(
        b,
        changeset(
            t,
            vec![update(ia, vec![("name", "alpha 2".into())], Some(1))],
        ),
    )
    .await;
    assert!(r.is_ok(), "update with the current version fails: {r:?}");
    let mut a2 = a.clone();
    a2.name = "alpha 2".into();
    a2.version = 2;
    assert_eq!(
        b.get(t, ITEMS, &key(ia)).await?,
        Some(a2.row()),
        "a versioned update sets the columns and bumps the version"
    );

    for stale in [1u64, 3, 0] {
        let r = commit(
            b,
            changeset(
                t,
                vec![update(ia, vec![("name", "lost".into())], Some(stale))],
            ),
        )
        .await;
        match r {
            Err(Error::Conflict {
                record,
                expected,
                actual,
            }) => {
                assert_eq!(record, item_ref(ia), "Conflict names the record");
                assert_eq!(
                    (expected, actual),
                    (stale, 2),
                    "Conflict names the versions"
                );
            }
            other => panic!("an update expecting version {stale} of a row at 2 gave {other:?}"),
        }
    }
    assert_eq!(
        b.get(t, ITEMS, &key(ia)).await?,
        Some(a2.row()),
        "a conflicting update changed the row"
    );

    let missing = Uuid::now_v7();
    let r = commit(
        b,
        changeset(
            t,
            vec![update(missing, vec![("name", "x".into())], Some(1))],
        ),
    )
    .await;
    match r {
        Err(Error::NotFound { kind, id }) => {
            assert_eq!(kind, ITEM_KIND, "NotFound names the record kind");
            assert_eq!(id, missing.to_string(), "NotFound names the id");
        }
        other => panic!("update of a missing row gave {other:?}"),
    }
    let r = commit(
        b,
        changeset(t, vec![update(missing, vec![("qty", Value::Int(1))], None)]),
    )
    .await;
    assert!(
        matches!(r, Err(Error::NotFound { .. })),
        "an unversioned update of a missing row gave {r:?}"
    );

    // Unversioned update: columns change, the version does not; NULL can be set.
    commit(
        b,
        changeset(
            t,
            vec![update(
                ib,
                vec![("qty", Value::Null), ("tag", "b".into())],
                None,
            )],
        ),
    )
    .await?;
    let mut b2 = bb.clone();
    b2.qty = None;
    b2.tag = Some("b".into());
    assert_eq!(
        b.get(t, ITEMS, &key(ib)).await?,
        Some(b2.row()),
        "an unversioned update"
    );

    // A stale write later in a changeset undoes the earlier writes.
    let r = commit(
        b,
        changeset(
            t,
            vec![
                update(ib, vec![("name", "beta 2".into())], Some(1)),
                Item::new(Uuid::now_v7(), "new").insert(),
                update(ia, vec![("name", "alpha 3".into())], Some(1)),
            ],
        ),
    )
    .await;
    assert!(
        matches!(r, Err(Error::Conflict { .. })),
        "a changeset with a stale update gave {r:?}"
    );
    assert_eq!(
        all_items(b, t).await?,
        {
            let mut v = vec![a2.row(), b2.row(), c.row()];
            v.sort();
            v
        },
        "a failed changeset left some of its writes"
    );

    // Deletes.
    commit(
        b,
        changeset(
            t,
            vec![Write::Delete {
                table: ITEMS,
                key: key(ic),
            }],
        ),
    )
    .await?;
    assert_eq!(b.get(t, ITEMS, &key(ic)).await?, None, "a deleted row");
    let r = commit(
        b,
        changeset(
            t,
            vec![Write::Delete {
                table: ITEMS,
                key: key(ic),
            }],
        ),
    )
    .await;
    assert!(r.is_ok(), "deleting an absent row is not an error: {r:?}");

    let del: Vec<Item> = [Some(1), Some(2), None, Some(3)]
        .iter()
        .enumerate()
        .map(|(i, q)| Item::new(Uuid::now_v7(), &format!("del-{i}")).qty(*q))
        .collect();
    insert_items(b, t, &del).await?;

    // UpdateWhere: the rows whose condition is true, in this tenant only, version kept.
    let other = TenantId::new();
    let twin = Item::new(Uuid::now_v7(), "del-twin").qty(Some(9));
    insert_items(b, other, std::slice::from_ref(&twin)).await?;
    let big = Cond::StartsWith("name".into(), "del-".into()).and(cmp("qty", CmpOp::Gt, 1));
    commit(
        b,
        changeset(
            t,
            vec![Write::UpdateWhere {
                table: ITEMS,
                cond: big.clone(),
                set: vec![("note", "big".into())],
            }],
        ),
    )
    .await?;
    expect_ids(
        b,
        t,
        Cond::eq("note", "big"),
        &[del[1].id, del[3].id],
        "UpdateWhere sets the rows where the condition is true",
    )
    .await?;
    let rows = b
        .select(t, &Select::new(ITEMS, Cond::eq("note", "big")))
        .await?;
    let vp = b.schema().table(ITEMS)?.position("version").unwrap_or(0);
    assert!(
        rows.iter().all(|r| r[vp] == Value::Int(1)),
        "UpdateWhere changed a version: {rows:?}"
    );
    assert_eq!(
        b.count(other, ITEMS, &Cond::eq("note", "big")).await?,
        0,
        "UpdateWhere reached another tenant's row"
    );
    let r = commit(
        b,
        changeset(
            t,
            vec![Write::UpdateWhere {
                table: ITEMS,
                cond: Cond::False,
                set: vec![("note", "none".into())],
            }],
        ),
    )
    .await;
    assert!(
        r.is_ok(),
        "UpdateWhere matching nothing is not an error: {r:?}"
    );
    let r = commit(
        b,
        changeset(
            t,
            vec![Write::UpdateWhere {
                table: ITEMS,
                cond: big,
                set: vec![("id", Value::Uuid(Uuid::now_v7()))],
            }],
        ),
    )
    .await;
    assert!(
        matches!(r, Err(Error::Config(_))),
        "UpdateWhere of a key column is a Config error, got {r:?}"
    );
    let r = commit(
        b,
        changeset(
            t,
            vec![Write::UpdateWhere {
                table: ITEMS,
                cond: Cond::StartsWith("name".into(), "del-".into()),
                set: vec![("tag", "same".into())],
            }],
        ),
    )
    .await;
    assert!(
        matches!(r, Err(Error::Duplicate { .. })),
        "UpdateWhere giving two rows one unique tag is a Duplicate, got {r:?}"
    );
    assert_eq!(
        b.count(t, ITEMS, &Cond::eq("tag", "same")).await?,
        0,
        "a failed UpdateWhere left changes"
    );
    commit(
        b,
        changeset(
            t,
            vec![Write::UpdateWhere {
                table: ITEMS,
                cond: Cond::True,
                set: vec![("note", Value::Null)],
            }],
        ),
    )
    .await?;

    let r = commit(
        b,
        changeset(
            t,
            vec![Write::DeleteWhere {
                table: ITEMS,
                cond: Cond::And(vec![
                    Cond::StartsWith("name".into(), "del-".into()),
                    not(cmp("qty", CmpOp::Eq, 2)),
                ]),
            }],
        ),
    )
    .await;
    assert!(r.is_ok(), "DeleteWhere failed: {r:?}");
    expect_ids(
        b,
        t,
        Cond::StartsWith("name".into(), "del-".into()),
        &[del[1].id, del[2].id],
        "DeleteWhere deletes rows where the condition is true, not unknown",
    )
    .await?;
    commit(
        b,
        changeset(
            t,
            vec![Write::DeleteWhere {
                table: ITEMS,
                cond: Cond::False,
            }],
        ),
    )
    .await?;
    assert_eq!(
        b.count(t, ITEMS, &Cond::True).await?,
        4,
        "DeleteWhere(False) deleted rows"
    );
    commit(
        b,
        changeset(
            t,
            vec![Write::DeleteWhere {
                table: ITEMS,
                cond: Cond::True,
            }],
        ),
    )
    .await?;
    assert_eq!(
        b.count(t, ITEMS, &Cond::True).await?,
        0,
        "DeleteWhere(True) left rows"
    );

    // Composite keys: update and delete.
    let pa = Uuid::now_v7();
    let pk = vec![Value::Uuid(pa), Value::Int(-5)];
    commit(
        b,
        changeset(
            t,
            vec![Write::Insert {
                table: PAIRS,
                row: vec![pk[0].clone(), pk[1].clone(), Value::Null, Value::Null],
            }],
        ),
    )
    .await?;
    commit(
        b,
        changeset(
            t,
            vec![Write::Update {
                table: PAIRS,
                key: pk.clone(),
                set: vec![("label", "l".into()), ("body", "b".into())],
                expect_version: None,
                record: item_ref(pa),
            }],
        ),
    )
    .await?;
    assert_eq!(
        b.get(t, PAIRS, &pk).await?,
        Some(vec![pk[0].clone(), pk[1].clone(), "l".into(), "b".into()]),
        "update by composite key"
    );
    commit(
        b,
        changeset(
            t,
            vec![Write::Delete {
                table: PAIRS,
                key: pk.clone(),
            }],
        ),
    )
    .await?;
    assert_eq!(b.get(t, PAIRS, &pk).await?, None, "delete by composite key");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Unique indexes and primary keys
// ---------------------------------------------------------------------------------------

/// What a tenant has in every table the suite looks at (items, pairs, events, audit,
/// sequences).
async fn snapshot(b: &dyn Backend, t: TenantId) -> Result<Vec<Vec<Row>>> {
    let mut out = vec![];
    for table in [ITEMS, PAIRS, EVENTS_TABLE, AUDIT_TABLE, SEQUENCES_TABLE] {
        out.push(rows_of(b, t, table).await?);
    }
    Ok(out)
}

fn with_trail(mut cs: Changeset, id: Uuid) -> Changeset {
    cs.audit.push(audit(id, "*", None, Some("{}")));
    cs.events
        .push(event("kit_item.created", id, serde_json::json!({"id": id})));
    cs
}

/// Primary-key and unique-index collisions (also within one changeset, also by update) are
/// Duplicate errors and the failed commit writes nothing: no row, audit entry or event, and
/// no sequence number is used up. NULLs never collide; values that differ only in case,
/// trailing spaces or normalisation do not collide; uniqueness is per tenant.
pub async fn unique_and_primary_keys(backend: Arc<dyn Backend>) -> Result<()> {
    let b = &*backend;
    let t = TenantId::new();
    let first = Item::new(Uuid::now_v7(), "first").tag(Some("x"));
    let c = commit(b, with_trail(changeset(t, vec![first.insert()]), first.id)).await?;
    assert_eq!(c.events, Some((1, 1)), "the first event of a tenant is 1");
    let before = snapshot(b, t).await?;

    let dup_tag = Item::new(Uuid::now_v7(), "second").tag(Some("x"));
    let ok_item = Item::new(Uuid::now_v7(), "ok").tag(Some("ok"));
    let mut dup_key = Item::new(first.id, "same id").tag(Some("other"));
    dup_key.qty = Some(9);
    let twin = Item::new(Uuid::now_v7(), "twin");
    let failing: Vec<(&str, Vec<Write>)> = vec![
        ("unique tag", vec![dup_tag.insert()]),
        (
            "unique tag after a good insert",
            vec![ok_item.insert(), dup_tag.insert()],
        ),
        ("primary key", vec![dup_key.insert()]),
        (
            "primary key twice in one changeset",
            vec![twin.insert(), twin.clone().tag(Some("t2")).insert()],
        ),
        (
            "update onto a taken tag",
            vec![
                ok_item.insert(),
                update(ok_item.id, vec![("tag", "x".into())], Some(1)),
            ],
        ),
        (
            "pairs label unique per a",
            vec![
                Write::Insert {
                    table: PAIRS,
                    row: vec![first.id.into(), Value::Int(1), "L".into(), Value::Null],
                },
                Write::Insert {
                    table: PAIRS,
                    row: vec![first.id.into(), Value::Int(2), "L".into(), Value::Null],
                },
            ],
        ),
    ];
    for (what, writes) in failing {
        let cs = with_trail(changeset(t, writes), first.id);
        let r = commit(b, cs).await;
        assert!(
            matches!(r, Err(Error::Duplicate { .. })),
            "{what}: expected Duplicate, got {r:?}"
        );
        assert_eq!(
            snapshot(b, t).await?,
            before,
            "{what}: the failed commit left a trace"
        );
    }

    // NULLs never collide, near-equal values are distinct.
    let mut fine: Vec<Item> = (0..3)
        .map(|i| Item::new(Uuid::now_v7(), &format!("null {i}")))
        .collect();
    for tag in [
        "X", "x ", " x", "ß", "ss", "SS", "e\u{301}", "\u{e9}", "İ", "i", "ı", "I",
    ] {
        fine.push(Item::new(Uuid::now_v7(), tag).tag(Some(tag)));
    }
    let r = commit(
        b,
        with_trail(
            changeset(t, fine.iter().map(Item::insert).collect()),
            first.id,
        ),
    )
    .await;
    assert_eq!(
        r.as_ref().ok().map(|c| c.events),
        Some(Some((2, 2))),
        "NULLs or near-equal values collided, or failed commits used up sequence numbers: {r:?}"
    );
    let pairs_ok = vec![
        vec![first.id.into(), Value::Int(1), "L".into(), Value::Null],
        vec![first.id.into(), Value::Int(2), Value::Null, Value::Null],
        vec![first.id.into(), Value::Int(3), Value::Null, Value::Null],
        vec![
            Uuid::now_v7().into(),
            Value::Int(1),
            "L".into(),
            Value::Null,
        ],
    ];
    let r = commit(
        b,
        changeset(
            t,
            pairs_ok
                .into_iter()
                .map(|row| Write::Insert { table: PAIRS, row })
                .collect(),
        ),
    )
    .await;
    assert!(
        r.is_ok(),
        "a unique (a, label) index collided on NULL labels or other a: {r:?}"
    );

    // Re-setting a row's own unique value is no collision.
    let r = commit(
        b,
        changeset(
            t,
            vec![update(first.id, vec![("tag", "x".into())], Some(1))],
        ),
    )
    .await;
    assert!(r.is_ok(), "setting a row's tag to its own value: {r:?}");

    // Uniqueness is per tenant.
    let other = TenantId::new();
    let r = insert_items(b, other, &[first.clone(), dup_tag.clone()]).await;
    assert!(
        matches!(r, Err(Error::Duplicate { .. })),
        "tag collision in another tenant: {r:?}"
    );
    let r = insert_items(b, other, std::slice::from_ref(&first)).await;
    assert!(
        r.is_ok(),
        "the same key and tag in another tenant collided: {r:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Atomicity under injected faults (RELIABILITY F2)
// ---------------------------------------------------------------------------------------

/// Injects `Fault::FailAtWrite(n)` for every `n` before each write of a changeset (row
/// writes, audit rows, the sequence allocation, event rows): the commit fails with a
/// Storage error and leaves exactly the state before it (never a record without its event,
/// or the reverse); a fault past the last write, or none, lets the same commit through.
pub async fn atomicity_under_faults(backend: Arc<dyn Backend>) -> Result<()> {
    let b = &*backend;
    let _guard = FaultGuard(b);
    let t = TenantId::new();
    let p = Item::new(Uuid::now_v7(), "to update").qty(Some(1));
    let q = Item::new(Uuid::now_v7(), "to delete").tag(Some("q"));
    let r = Item::new(Uuid::now_v7(), "to delete where").qty(Some(77));
    let setup = with_trail(changeset(t, vec![p.insert(), q.insert(), r.insert()]), p.id);
    commit(b, setup).await?;

    let x = Item::new(Uuid::now_v7(), "new x").tag(Some("x"));
    let y = Item::new(Uuid::now_v7(), "new y").qty(Some(5));
    let full = {
        let mut cs = changeset(
            t,
            vec![
                x.insert(),
                y.insert(),
                update(p.id, vec![("name", "updated".into())], Some(1)),
                Write::Delete {
                    table: ITEMS,
                    key: key(q.id),
                },
                Write::DeleteWhere {
                    table: ITEMS,
                    cond: cmp("qty", CmpOp::Eq, 77),
                },
            ],
        );
        cs.audit.push(audit(x.id, "*", None, Some("{\"x\":1}")));
        cs.audit.push(audit(
            p.id,
            "name",
            Some("\"to update\""),
            Some("\"updated\""),
        ));
        cs.events
            .push(event("kit_item.created", x.id, serde_json::json!({"n": 1})));
        cs.events
            .push(event("kit_item.updated", p.id, serde_json::json!({"n": 2})));
        cs
    };
    // 5 row writes, 2 audit rows, the sequence allocation, 2 event rows.
    let steps = 5 + 2 + 1 + 2;
    fault_sweep(b, t, &full, steps, "rows, audit and events").await?;

    let no_events = {
        let mut cs = changeset(
            t,
            vec![
                Item::new(Uuid::now_v7(), "a").insert(),
                Item::new(Uuid::now_v7(), "b").insert(),
            ],
        );
        cs.audit.push(audit(p.id, "qty", None, Some("3")));
        cs
    };
    fault_sweep(b, t, &no_events, 3, "rows and audit, no events").await?;

    let only_events = {
        let mut cs = changeset(t, vec![]);
        for i in 0..3 {
            cs.events.push(event(
                "kit_item.updated",
                p.id,
                serde_json::json!({ "i": i }),
            ));
        }
        cs
    };
    fault_sweep(b, t, &only_events, 4, "events only").await?;

    let events: Vec<i64> = rows_of(b, t, EVENTS_TABLE)
        .await?
        .iter()
        .map(|r| r[0].as_int().unwrap_or(-1))
        .collect();
    assert_eq!(
        events,
        (1..=6).collect::<Vec<_>>(),
        "after failed and successful commits the event sequence is 1..=6 without gaps"
    );
    Ok(())
}

async fn fault_sweep(
    b: &dyn Backend,
    t: TenantId,
    cs: &Changeset,
    steps: usize,
    what: &str,
) -> Result<()> {
    let before = snapshot(b, t).await?;
    let last_seq = rows_of(b, t, EVENTS_TABLE).await?.len() as u64;
    for n in 0..steps {
        b.inject_fault(Some(Fault::FailAtWrite(n)));
        let r = b.commit(cs.clone()).await;
        b.inject_fault(None);
        assert!(
            matches!(r, Err(Error::Storage { .. })),
            "{what}: with a fault before write {n} the commit gave {r:?}, not a Storage error"
        );
        assert_eq!(
            snapshot(b, t).await?,
            before,
            "{what}: a commit failing before write {n} left a partial change"
        );
    }
    b.inject_fault(Some(Fault::FailAtWrite(steps)));
    let r = b.commit(cs.clone()).await;
    b.inject_fault(None);
    let n = cs.events.len() as u64;
    let want = (n > 0).then(|| (last_seq + 1, last_seq + n));
    match r {
        Ok(c) => assert_eq!(
            c.events, want,
            "{what}: the commit after the faults got the wrong event numbers"
        ),
        Err(e) => panic!(
            "{what}: a fault at write {steps} (past the last write of {steps}) failed the commit: {e}"
        ),
    }
    assert_ne!(
        snapshot(b, t).await?,
        before,
        "{what}: the commit did nothing"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

fn events_changeset(t: TenantId, kinds: &[&str]) -> (Changeset, Vec<NewEvent>) {
    let mut cs = changeset(t, vec![]);
    let mut events = vec![];
    for (i, k) in kinds.iter().enumerate() {
        let e = NewEvent::new(
            *k,
            item_ref(Uuid::now_v7()),
            vec!["name".into(), format!("f{i}")],
            serde_json::json!({ "i": i, "text": tricky_strings()[i % 20] }),
        );
        events.push(e.clone());
        cs.events.push(e);
    }
    (cs, events)
}

/// Each tenant's events are numbered 1, 2, 3, ... without gaps, in commit order; a commit
/// without events gets none; events read back through `Store::events_since` with every field
/// intact (timestamp to the microsecond), as are audit entries through `Store::audit_unchecked`.
pub async fn event_sequence(backend: Arc<dyn Backend>) -> Result<()> {
    let b = &*backend;
    let (ta, tb) = (TenantId::new(), TenantId::new());
    let mut written: BTreeMap<(TenantId, u64), (NewEvent, Option<UserId>)> = BTreeMap::new();
    // (tenant, event kinds, expected event numbers)
    type Step<'a> = (TenantId, &'a [&'a str], Option<(u64, u64)>);
    let plan: [Step; 6] = [
        (ta, &["kit_item.created"], Some((1, 1))),
        (tb, &["kit_item.created", "kit_item.updated"], Some((1, 2))),
        (ta, &["kit_item.updated", "kit_item.deleted"], Some((2, 3))),
        (ta, &[], None),
        (ta, &["a.b", "c.d", "e.f"], Some((4, 6))),
        (tb, &["kit_item.deleted"], Some((3, 3))),
    ];
    for (t, kinds, want) in plan {
        let (mut cs, events) = events_changeset(t, kinds);
        if events.is_empty() {
            cs.writes
                .push(Item::new(Uuid::now_v7(), "no events").insert());
        }
        let actor = cs.actor;
        let c = commit(b, cs).await?;
        assert_eq!(
            c.events,
            want,
            "event numbers of a commit of {} events",
            kinds.len()
        );
        if let Some((first, _)) = c.events {
            for (i, e) in events.into_iter().enumerate() {
                written.insert((t, first + i as u64), (e, actor));
            }
        }
    }

    let store = Store::from_arc(backend.clone(), modules()?);
    for t in [ta, tb] {
        let ctx = admin_ctx(t)?;
        let feed = store.events_since(&ctx, 0, 100).await?;
        let want: Vec<u64> = written
            .keys()
            .filter(|(tt, _)| *tt == t)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(
            feed.iter().map(|e| e.seq).collect::<Vec<_>>(),
            want,
            "a tenant's feed is its own 1, 2, 3, ..."
        );
        for e in &feed {
            let (new, actor) = &written[&(t, e.seq)];
            assert_eq!(e.tenant, t);
            assert_eq!(&e.kind, &new.kind, "event kind");
            assert_eq!(&e.record, &new.record, "event record");
            assert_eq!(&e.changed, &new.changed, "event changed fields");
            let sent: serde_json::Value = serde_json::from_str(&new.payload).expect("JSON payload");
            assert_eq!(&e.payload, &sent, "event payload");
            assert_eq!(&e.actor, actor, "event actor");
            assert_eq!(e.origin, "testkit", "event origin");
            assert_eq!(e.at, at(), "event time (to the microsecond)");
        }
    }
    let ctx = admin_ctx(ta)?;
    let page: Vec<u64> = store
        .events_since(&ctx, 3, 2)
        .await?
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(page, [4, 5], "events_since(3, limit 2)");
    assert!(
        store.events_since(&ctx, 6, 10).await?.is_empty(),
        "events_since past the end"
    );

    // Audit entries round-trip.
    let id = Uuid::now_v7();
    let mut cs = changeset(ta, vec![Item::new(id, "audited").insert()]);
    cs.audit
        .push(audit(id, "*", None, Some("{\"name\":\"audited\"}")));
    cs.audit
        .push(audit(id, "name", Some("\"' OR 1=1--\""), Some("\"😀\"")));
    cs.audit.push(audit(id, "qty", Some("1"), None));
    let actor = cs.actor;
    let want = cs.audit.clone();
    commit(b, cs).await?;
    let trail = store.audit_unchecked(&ctx, &item_ref(id)).await?;
    assert_eq!(
        trail.iter().map(|e| e.change.clone()).collect::<Vec<_>>(),
        want,
        "audit entries read back in order with their values"
    );
    assert!(
        trail.iter().all(|e| e.actor == actor && e.at == at()),
        "audit actor and time"
    );
    Ok(())
}

/// `reserve`: 16 concurrent tasks reserving 1 to 3 values each get disjoint ranges that
/// tile 1..=N in the order each task saw them (increasing); tenants and sequence names are
/// independent; the events sequence and empty reservations are refused, and reserving does
/// not move the change feed.
pub async fn reserve_sequences(backend: Arc<dyn Backend>) -> Result<()> {
    const TASKS: usize = 16;
    const ROUNDS: u64 = 5;
    let t = TenantId::new();
    let mut handles = vec![];
    for task in 0..TASKS {
        let b = backend.clone();
        handles.push(tokio::spawn(async move {
            let mut got = vec![];
            for round in 0..ROUNDS {
                let n = 1 + (task as u64 + round) % 3;
                let first = b.reserve(t, "kit_numbers", n).await?;
                got.push((first, n));
            }
            Result::<Vec<(u64, u64)>>::Ok(got)
        }));
    }
    let mut all = vec![];
    for h in handles {
        let got = h
            .await
            .map_err(|e| Error::storage(format!("join: {e}")))??;
        assert!(
            got.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0),
            "one task's reservations increase: {got:?}"
        );
        all.extend(got);
    }
    all.sort();
    let mut next = 1;
    for (first, n) in &all {
        assert_eq!(
            *first, next,
            "reservations tile 1..=N without overlap: {all:?}"
        );
        next = first + n;
    }
    let other = TenantId::new();
    assert_eq!(
        backend.reserve(other, "kit_numbers", 2).await?,
        1,
        "tenants are independent"
    );
    assert_eq!(
        backend.reserve(t, "kit_other", 1).await?,
        1,
        "names are independent"
    );
    assert_eq!(
        backend.reserve(t, "kit_numbers", 1).await?,
        next,
        "continues"
    );
    for (name, n) in [("events", 1), ("kit_numbers", 0), ("", 1)] {
        let r = backend.reserve(t, name, n).await;
        assert!(
            matches!(r, Err(Error::Config(_))),
            "reserve({name:?}, {n}): {r:?}"
        );
    }
    let id = Uuid::now_v7();
    let mut cs = changeset(t, vec![Item::new(id, "after").insert()]);
    cs.events
        .push(event("kit.created", id, serde_json::json!({})));
    let c = commit(&*backend, cs).await?;
    assert_eq!(
        c.events,
        Some((1, 1)),
        "reserving leaves the event sequence alone"
    );
    Ok(())
}

/// 16 tasks commit concurrently (each commit an item, an audit entry and 1 to 3 events) on
/// one tenant: the commits' event ranges tile exactly 1..=N, and a reader polling
/// `seq > cursor ORDER BY seq` meanwhile never sees a gap (never seq k+1 before seq k).
pub async fn concurrent_event_sequence(backend: Arc<dyn Backend>) -> Result<()> {
    const TASKS: usize = 16;
    const COMMITS: usize = 6;
    let t = TenantId::new();
    let done = Arc::new(AtomicBool::new(false));

    let reader = {
        let backend = backend.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut cursor = 0i64;
            let mut polls = 0u64;
            loop {
                let finished = done.load(Ordering::SeqCst);
                let mut s = Select::new(EVENTS_TABLE, cmp("seq", CmpOp::Gt, cursor));
                s.order = vec![asc("seq")];
                s.limit = Some(64);
                let rows = backend.select(t, &s).await?;
                for r in &rows {
                    let seq = r[0].as_int().unwrap_or(-1);
                    assert_eq!(
                        seq,
                        cursor + 1,
                        "the reader at cursor {cursor} saw seq {seq}: a gap (an event committed \
                         after a later one became visible)"
                    );
                    cursor = seq;
                }
                polls += 1;
                if finished && rows.is_empty() {
                    return Ok::<(i64, u64), Error>((cursor, polls));
                }
                tokio::task::yield_now().await;
            }
        })
    };

    let mut writers = vec![];
    for task in 0..TASKS {
        let backend = backend.clone();
        writers.push(tokio::spawn(async move {
            let mut got = vec![];
            for i in 0..COMMITS {
                let n = 1 + (task + i) % 3;
                let id = Uuid::now_v7();
                let mut cs = changeset(t, vec![Item::new(id, &format!("w{task}-{i}")).insert()]);
                cs.audit.push(audit(id, "*", None, Some("{}")));
                for k in 0..n {
                    cs.events.push(event(
                        "kit_item.created",
                        id,
                        serde_json::json!({"task": task, "i": i, "k": k}),
                    ));
                }
                let c = backend.commit(cs).await?;
                let (first, last) = c
                    .events
                    .unwrap_or_else(|| panic!("a commit of {n} events got no numbers"));
                assert_eq!(last + 1 - first, n as u64, "a commit's range has its size");
                got.push((first, last));
            }
            Ok::<_, Error>(got)
        }));
    }
    let mut results = vec![];
    for w in writers {
        results.push(w.await);
    }
    // Stop the reader before reporting a writer's failure, so it never spins on.
    done.store(true, Ordering::SeqCst);
    let read = reader.await;
    let mut ranges = vec![];
    for r in results {
        ranges.extend(r.map_err(|e| Error::storage_from("a writer task", e))??);
    }
    let (cursor, _polls) = read.map_err(|e| Error::storage_from("the reader task", e))??;

    ranges.sort();
    let mut next = 1;
    for (first, last) in &ranges {
        assert_eq!(*first, next, "commit ranges do not tile 1..=N: {ranges:?}");
        next = last + 1;
    }
    let total = next - 1;
    assert_eq!(cursor as u64, total, "the reader saw every event");
    let seqs: Vec<i64> = rows_of(&*backend, t, EVENTS_TABLE)
        .await?
        .iter()
        .map(|r| r[0].as_int().unwrap_or(-1))
        .collect();
    assert_eq!(
        seqs,
        (1..=total as i64).collect::<Vec<_>>(),
        "stored events are exactly 1..=N"
    );
    assert_eq!(
        backend.count(t, ITEMS, &Cond::True).await?,
        (TASKS * COMMITS) as u64,
        "every commit wrote its item"
    );
    assert_eq!(
        backend.count(t, AUDIT_TABLE, &Cond::True).await?,
        (TASKS * COMMITS) as u64,
        "every commit wrote its audit entry"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Tenant isolation (RELIABILITY T1)
// ---------------------------------------------------------------------------------------

fn custom_value(
    kind: &str,
    field: &str,
    id: Uuid,
    ord: i64,
    int_val: Option<i64>,
    text_val: Option<&str>,
) -> Write {
    Write::Insert {
        table: VALUES_TABLE,
        row: vec![
            Value::Text(kind.into()),
            Value::Text(field.into()),
            Value::Uuid(id),
            Value::Int(ord),
            Value::opt_int(int_val),
            Value::opt_text(text_val),
            Value::opt_text(text_val.map(str::to_lowercase)),
        ],
    }
}

fn custom(field: &str, cond: Option<Cond>) -> Cond {
    Cond::Custom {
        field: CustomRef {
            record_kind: ITEM_KIND.as_str().into(),
            key: field.into(),
        },
        cond: cond.map(Box::new),
    }
}

fn custom_key(field: &str, column: &str, desc: bool, null_as: Value) -> OrderKey {
    OrderKey {
        column: column.into(),
        desc,
        null_as: Some(null_as),
        custom: Some(CustomRef {
            record_kind: ITEM_KIND.as_str().into(),
            key: field.into(),
        }),
    }
}

/// Everything a set of read operations returns for a tenant, as text.
async fn fingerprint(b: &dyn Backend, t: TenantId, ids: &[Uuid]) -> Result<Vec<String>> {
    let mut out = vec![];
    for id in ids {
        out.push(format!("get {:?}", b.get(t, ITEMS, &key(*id)).await?));
        out.push(format!(
            "get pair {:?}",
            b.get(t, PAIRS, &[Value::Uuid(*id), Value::Int(1)]).await?
        ));
    }
    let conds = vec![
        Cond::True,
        Cond::eq("name", "same-2"),
        Cond::In("id".into(), ids.iter().map(|i| Value::Uuid(*i)).collect()),
        Cond::IsNull("tag".into()),
        Cond::Contains("name".into(), "same".into()),
        Cond::StartsWith("tag".into(), "t".into()),
        not(cmp("qty", CmpOp::Lt, 3)),
        custom("tier", None),
        custom("tier", Some(cmp("int_val", CmpOp::Gt, 1))),
    ];
    for c in &conds {
        let mut s = Select::new(ITEMS, c.clone());
        s.order = vec![nulls_as(asc("qty"), Value::Int(0)), asc("id")];
        out.push(format!("select {c:?} {:?}", b.select(t, &s).await?));
        out.push(format!("count {c:?} {}", b.count(t, ITEMS, c).await?));
        s.order = vec![
            custom_key("tier", "int_val", true, Value::Int(-1)),
            asc("id"),
        ];
        s.limit = Some(3);
        out.push(format!("custom sort {c:?} {:?}", b.select(t, &s).await?));
    }
    for group_by in [vec![], vec!["tag".to_owned()]] {
        let agg = Aggregate {
            table: ITEMS,
            cond: Cond::True,
            group_by,
            measures: vec![
                Measure::Count,
                Measure::Sum("qty".into()),
                Measure::Sum("amount".into()),
            ],
            buckets: None,
        };
        let mut rows = b.aggregate(t, &agg).await?;
        rows.sort();
        out.push(format!("aggregate {rows:?}"));
    }
    for table in [
        PAIRS,
        EVENTS_TABLE,
        AUDIT_TABLE,
        SEQUENCES_TABLE,
        VALUES_TABLE,
    ] {
        out.push(format!("{table} {:?}", rows_of(b, t, table).await?));
    }
    Ok(out)
}

async fn populate_tenant(b: &dyn Backend, t: TenantId, ids: &[Uuid], base: i64) -> Result<()> {
    let mut cs = changeset(t, vec![]);
    for (i, id) in ids.iter().enumerate() {
        let item = Item::new(*id, &format!("same-{i}"))
            .qty(Some(base + i as i64))
            .amount(base * 1000 + i as i64)
            .tag((i % 2 == 0).then_some(format!("t{i}")).as_deref());
        cs.writes.push(item.insert());
        cs.writes.push(Write::Insert {
            table: PAIRS,
            row: vec![Value::Uuid(*id), Value::Int(1), "same".into(), Value::Null],
        });
        cs.writes.push(custom_value(
            ITEM_KIND.as_str(),
            "tier",
            *id,
            0,
            Some(base + i as i64),
            None,
        ));
        cs.audit.push(audit(*id, "*", None, Some("{}")));
        cs.events
            .push(event("kit_item.created", *id, serde_json::json!({})));
    }
    commit(b, cs).await?;
    Ok(())
}

/// Two tenants hold colliding data (same ids, names, tags, custom values); every read as
/// tenant A (get, select with many conditions and custom sorts, count, aggregate, events,
/// audit, sequences) returns only A's data; A's writes (update, delete, delete-where,
/// writes to B's keys) leave B exactly as it was, and B's writes leave everything A reads
/// exactly as it was.
pub async fn tenant_isolation(backend: Arc<dyn Backend>) -> Result<()> {
    let b = &*backend;
    let (ta, tb) = (TenantId::new(), TenantId::new());
    let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    let b_only = Uuid::now_v7();
    populate_tenant(b, ta, &ids, 1).await?;
    populate_tenant(b, tb, &ids, 101).await?;
    insert_items(b, tb, &[Item::new(b_only, "b only").qty(Some(500))]).await?;
    let mut probe = ids.clone();
    probe.push(b_only);

    // A sees only its own rows.
    let rows = all_items(b, ta).await?;
    assert_eq!(rows.len(), 5, "tenant A sees another tenant's rows");
    assert!(
        rows.iter()
            .all(|r| r[QTY].as_int().is_some_and(|q| (1..=5).contains(&q))),
        "tenant A sees B's values: {rows:?}"
    );
    assert_eq!(
        b.get(ta, ITEMS, &key(b_only)).await?,
        None,
        "get returns another tenant's row"
    );
    let agg = b
        .aggregate(
            ta,
            &Aggregate {
                table: ITEMS,
                cond: Cond::True,
                group_by: vec![],
                measures: vec![Measure::Count, Measure::Sum("qty".into())],
                buckets: None,
            },
        )
        .await?;
    assert_eq!(
        agg,
        vec![vec![Value::Int(5), Value::Int(15)]],
        "aggregate mixes tenants"
    );
    expect_ids(
        b,
        ta,
        custom("tier", Some(cmp("int_val", CmpOp::Gt, 100))),
        &[],
        "custom condition joins another tenant's values",
    )
    .await?;

    let fa0 = fingerprint(b, ta, &probe).await?;
    let fb0 = fingerprint(b, tb, &probe).await?;

    // A writes; B must not change.
    let a_writes: Vec<(&str, Vec<Write>)> = vec![
        (
            "update",
            vec![update(ids[0], vec![("name", "changed".into())], Some(1))],
        ),
        (
            "delete",
            vec![Write::Delete {
                table: ITEMS,
                key: key(ids[1]),
            }],
        ),
        (
            "delete pair",
            vec![Write::Delete {
                table: PAIRS,
                key: vec![Value::Uuid(ids[1]), Value::Int(1)],
            }],
        ),
        (
            "delete where",
            vec![Write::DeleteWhere {
                table: ITEMS,
                cond: Cond::eq("name", "same-2"),
            }],
        ),
        (
            "delete custom values",
            vec![Write::DeleteWhere {
                table: VALUES_TABLE,
                cond: Cond::eq("record_id", ids[3]),
            }],
        ),
        (
            "delete of B's key",
            vec![Write::Delete {
                table: ITEMS,
                key: key(b_only),
            }],
        ),
        (
            "insert of B's key",
            vec![Item::new(b_only, "a's own").tag(Some("t0-a")).insert()],
        ),
    ];
    for (what, writes) in a_writes {
        let r = commit(b, with_trail(changeset(ta, writes), ids[0])).await;
        assert!(r.is_ok(), "tenant A's {what} failed: {r:?}");
        assert_eq!(
            fingerprint(b, tb, &probe).await?,
            fb0,
            "tenant A's {what} changed what tenant B reads"
        );
    }
    let r = commit(
        b,
        changeset(ta, vec![update(ids[1], vec![("qty", Value::Int(0))], None)]),
    )
    .await;
    assert!(
        matches!(r, Err(Error::NotFound { .. })),
        "update of a row that exists only in tenant B gave {r:?}"
    );
    let r = commit(
        b,
        changeset(
            ta,
            vec![Write::DeleteWhere {
                table: ITEMS,
                cond: Cond::True,
            }],
        ),
    )
    .await;
    assert!(r.is_ok(), "tenant A's delete-all failed: {r:?}");
    assert_eq!(
        fingerprint(b, tb, &probe).await?,
        fb0,
        "tenant A's delete-all changed tenant B"
    );
    assert_ne!(
        fingerprint(b, ta, &probe).await?,
        fa0,
        "tenant A's writes did nothing"
    );

    // B writes; A must not change.
    commit(
        b,
        changeset(
            ta,
            [PAIRS, VALUES_TABLE]
                .into_iter()
                .map(|table| Write::DeleteWhere {
                    table,
                    cond: Cond::True,
                })
                .collect(),
        ),
    )
    .await?;
    populate_tenant(b, ta, &ids, 1).await?;
    let fa1 = fingerprint(b, ta, &probe).await?;
    let b_writes: Vec<Write> = vec![
        update(ids[0], vec![("name", "b changed".into())], Some(1)),
        Write::Delete {
            table: ITEMS,
            key: key(ids[2]),
        },
        Write::DeleteWhere {
            table: VALUES_TABLE,
            cond: Cond::True,
        },
        Write::DeleteWhere {
            table: PAIRS,
            cond: Cond::True,
        },
        Item::new(Uuid::now_v7(), "same-9")
            .tag(Some("t0-b"))
            .insert(),
        Write::DeleteWhere {
            table: ITEMS,
            cond: cmp("qty", CmpOp::Gt, 103),
        },
    ];
    commit(b, with_trail(changeset(tb, b_writes), ids[0])).await?;
    assert_eq!(
        fingerprint(b, ta, &probe).await?,
        fa1,
        "tenant B's writes changed what tenant A reads"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Select semantics
// ---------------------------------------------------------------------------------------

/// SQL's three-valued logic on every backend: a comparison with NULL is unknown, `Not` of
/// unknown is unknown, `In` with a NULL in the list is unknown unless it matches, an empty
/// `In` is false (and its negation true, NULLs included), empty And/Or are true/false.
pub async fn three_valued_logic(backend: Arc<dyn Backend>) -> Result<()> {
    let b = &*backend;
    let t = TenantId::new();
    let r1 = Item::new(Uuid::now_v7(), "one").qty(Some(1)).tag(Some("x"));
    let r2 = Item::new(Uuid::now_v7(), "two").qty(Some(2));
    let r3 = Item::new(Uuid::now_v7(), "three").tag(Some("y"));
    insert_items(b, t, &[r1.clone(), r2.clone(), r3.clone()]).await?;
    let (a, bb, c) = (r1.id, r2.id, r3.id);
    let q1 = || cmp("qty", CmpOp::Eq, 1);
    let null_cmp = || Cond::Cmp("qty".into(), CmpOp::Eq, Value::Null);
    let cases: Vec<(Cond, Vec<Uuid>)> = vec![
        (Cond::True, vec![a, bb, c]),
        (Cond::False, vec![]),
        (not(Cond::True), vec![]),
        (not(Cond::False), vec![a, bb, c]),
        (q1(), vec![a]),
        (cmp("qty", CmpOp::Ne, 1), vec![bb]),
        (cmp("qty", CmpOp::Lt, 2), vec![a]),
        (cmp("qty", CmpOp::Lte, 2), vec![a, bb]),
        (cmp("qty", CmpOp::Gt, 1), vec![bb]),
        (cmp("qty", CmpOp::Gte, i64::MIN), vec![a, bb]),
        (not(q1()), vec![bb]),
        (not(not(q1())), vec![a]),
        (null_cmp(), vec![]),
        (not(null_cmp()), vec![]),
        (Cond::Cmp("qty".into(), CmpOp::Ne, Value::Null), vec![]),
        (Cond::Cmp("name".into(), CmpOp::Eq, Value::Null), vec![]),
        (Cond::In("qty".into(), vec![1.into(), Value::Null]), vec![a]),
        (
            not(Cond::In("qty".into(), vec![1.into(), Value::Null])),
            vec![],
        ),
        (not(Cond::In("qty".into(), vec![1.into()])), vec![bb]),
        (Cond::In("qty".into(), vec![]), vec![]),
        (not(Cond::In("qty".into(), vec![])), vec![a, bb, c]),
        (Cond::In("qty".into(), vec![Value::Null]), vec![]),
        (not(Cond::In("qty".into(), vec![Value::Null])), vec![]),
        (Cond::IsNull("qty".into()), vec![c]),
        (not(Cond::IsNull("qty".into())), vec![a, bb]),
        (Cond::Or(vec![q1(), Cond::IsNull("qty".into())]), vec![a, c]),
        (Cond::And(vec![]), vec![a, bb, c]),
        (Cond::Or(vec![]), vec![]),
        (not(Cond::And(vec![])), vec![]),
        (not(Cond::Or(vec![])), vec![a, bb, c]),
        (
            not(Cond::And(vec![
                cmp("qty", CmpOp::Gt, 0),
                cmp("qty", CmpOp::Lt, 2),
            ])),
            vec![bb],
        ),
        (not(Cond::Or(vec![q1(), null_cmp()])), vec![]),
        (Cond::Or(vec![q1(), null_cmp()]), vec![a]),
        (
            not(Cond::And(vec![cmp("qty", CmpOp::Gt, 1), null_cmp()])),
            vec![a],
        ),
        (Cond::And(vec![not(null_cmp()), Cond::False]), vec![]),
        (
            not(Cond::And(vec![null_cmp(), Cond::False])),
            vec![a, bb, c],
        ),
        (
            Cond::Or(vec![cmp("tag", CmpOp::Eq, "x"), cmp("qty", CmpOp::Eq, 2)]),
            vec![a, bb],
        ),
        (not(cmp("tag", CmpOp::Eq, "x")), vec![c]),
        (not(Cond::Contains("tag".into(), "x".into())), vec![c]),
        (not(Cond::StartsWith("tag".into(), "".into())), vec![]),
        (Cond::StartsWith("tag".into(), "".into()), vec![a, c]),
        (Cond::In("id".into(), vec![a.into(), c.into()]), vec![a, c]),
        (
            Cond::In("tag".into(), vec!["y".into(), "z".into(), Value::Null]),
            vec![c],
        ),
        (not(Cond::In("tag".into(), vec!["y".into()])), vec![a]),
    ];
    for (cond, want) in cases {
        expect_ids(b, t, cond, &want, "three-valued logic").await?;
    }
    Ok(())
}

/// Contains and StartsWith are byte-exact and treat `%`, `_`, `!`, `\` and quotes in the
/// needle literally (no LIKE wildcards or escapes leak through), are case-sensitive and
/// normalisation-sensitive, and never match NULL.
pub async fn text_matching(backend: Arc<dyn Backend>) -> Result<()> {
    let b = &*backend;
    let t = TenantId::new();
    let names = [
        "100%",
        "100 percent",
        "a_b",
        "axb",
        "a!b",
        "a\\b",
        "a\\\\b",
        "ab",
        "AB",
        "a%b",
        "x'y",
        "na\u{ef}ve",
        "nai\u{308}ve",
        "[ab]",
        "a*b",
        "a.b",
    ];
    let items: Vec<Item> = names
        .iter()
        .map(|n| Item::new(Uuid::now_v7(), n).tag((n.len() <= 3).then_some(n).map(|s| &**s)))
        .collect();
    insert_items(b, t, &items).await?;
    let id = |n: &str| items.iter().find(|i| i.name == n).expect("listed").id;
    let all: Vec<Uuid> = items.iter().map(|i| i.id).collect();
    let with_tag: Vec<Uuid> = items
        .iter()
        .filter(|i| i.tag.is_some())
        .map(|i| i.id)
        .collect();
    let contains = |n: &str| Cond::Contains("name".into(), n.into());
    let starts = |n: &str| Cond::StartsWith("name".into(), n.into());
    let cases: Vec<(Cond, Vec<Uuid>)> = vec![
        (contains("%"), vec![id("100%"), id("a%b")]),
        (contains("_"), vec![id("a_b")]),
        (contains("!"), vec![id("a!b")]),
        (contains("\\"), vec![id("a\\b"), id("a\\\\b")]),
        (contains("\\\\"), vec![id("a\\\\b")]),
        (contains("'"), vec![id("x'y")]),
        (contains("ab"), vec![id("ab"), id("[ab]")]),
        (contains("AB"), vec![id("AB")]),
        (contains("[ab]"), vec![id("[ab]")]),
        (contains("*"), vec![id("a*b")]),
        (contains("."), vec![id("a.b")]),
        (contains("\u{ef}"), vec![id("na\u{ef}ve")]),
        (contains("\u{308}"), vec![id("nai\u{308}ve")]),
        (contains("i\u{308}"), vec![id("nai\u{308}ve")]),
        (contains(""), all.clone()),
        (contains("%%"), vec![]),
        (contains("a%"), vec![id("a%b")]),
        (starts(""), all.clone()),
        (starts("a_"), vec![id("a_b")]),
        (starts("a\\"), vec![id("a\\b"), id("a\\\\b")]),
        (starts("100%"), vec![id("100%")]),
        (starts("100"), vec![id("100%"), id("100 percent")]),
        (starts("a%"), vec![id("a%b")]),
        (starts("A"), vec![id("AB")]),
        (starts("b"), vec![]),
        (starts("%"), vec![]),
        (starts("_"), vec![]),
        (
            not(contains("a")),
            vec![id("100%"), id("100 percent"), id("AB"), id("x'y")],
        ),
        (Cond::Contains("tag".into(), "".into()), with_tag.clone()),
        (not(Cond::Contains("tag".into(), "zzz".into())), with_tag),
        (Cond::Contains("tag".into(), "_".into()), vec![id("a_b")]),
    ];
    for (cond, want) in cases {
        expect_ids(b, t, cond, &want, "text matching").await?;
    }
    Ok(())
}

/// Text sorts by UTF-8 bytes on every backend: uppercase before lowercase, ASCII before
/// everything else, no collation; NULLs sort as their `null_as` value.
pub async fn text_order(backend: Arc<dyn Backend>) -> Result<()> {
    let b = &*backend;
    let t = TenantId::new();
    let names = [
        "b", "B", "a", "A", "é", "e\u{301}", "z", "Z", "ä", "😀", "aa", "a a", "", " ", "_", "~",
        "İ", "ı", "ß", "ss", "10", "9", "a-b", "ab", "日本",
    ];
    let items: Vec<Item> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            Item::new(fixed_id(i as u128), n).tag((i % 3 != 0).then_some(n).map(|s| &**s))
        })
        .collect();
    insert_items(b, t, &items).await?;
    let def = b.schema().table(ITEMS)?.clone();
    let rows: Vec<Row> = items.iter().map(Item::row).collect();

    let mut by_bytes: Vec<&str> = names.to_vec();
    by_bytes.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let orders = vec![
        vec![asc("name"), asc("id")],
        vec![desc("name"), asc("id")],
        vec![nulls_as(asc("tag"), Value::Text("".into())), asc("id")],
        vec![nulls_as(desc("tag"), Value::Text("m".into())), desc("id")],
        vec![desc("name_fold"), asc("name"), desc("id")],
    ];
    for order in orders {
        let mut s = Select::new(ITEMS, Cond::True);
        s.order = order.clone();
        let got = b.select(t, &s).await?;
        let want = expected_order(&def, &order, &rows);
        let show = |rs: &[Row]| -> Vec<String> {
            rs.iter()
                .map(|r| format!("{:?}/{:?}", r[NAME], r[TAG]))
                .collect()
        };
        assert_eq!(
            show(&got),
            show(&want),
            "text is not ordered by bytes for {order:?}"
        );
    }
    let mut s = Select::new(ITEMS, Cond::True);
    s.order = vec![asc("name"), asc("id")];
    let got: Vec<String> = b
        .select(t, &s)
        .await?
        .iter()
        .map(|r| r[NAME].as_text().unwrap_or("?").to_owned())
        .collect();
    assert_eq!(got, by_bytes, "names sorted ascending by UTF-8 bytes");
    // Comparisons follow the same order.
    for pivot in ["a", "Z", "é", "ß"] {
        let want: Vec<Uuid> = items
            .iter()
            .filter(|i| i.name.as_bytes() > pivot.as_bytes())
            .map(|i| i.id)
            .collect();
        expect_ids(
            b,
            t,
            cmp("name", CmpOp::Gt, pivot),
            &want,
            "text comparison by bytes",
        )
        .await?;
    }
    Ok(())
}

fn paging_items() -> Vec<Item> {
    let names = ["kiwi", "Apple", "apple", "kiwi", "zeta", "Äpfel", "kiwi"];
    (0..23u64)
        .map(|i| {
            let mut item = Item::new(fixed_id(u128::from(i * 7 % 23)), names[i as usize % 7])
                .qty(match i % 4 {
                    0 => None,
                    1 => Some(i as i64 % 3),
                    2 => Some(-(i as i64)),
                    _ => Some(i64::MAX - (i as i64 % 2)),
                })
                .amount(((i * 37) % 5) as i64 - 2)
                .tag(
                    (i % 3 != 0)
                        .then(|| format!("t{:02}", (i * 11) % 23))
                        .as_deref(),
                );
            item.name_fold = format!("{}", i % 4);
            item
        })
        .collect()
}

/// Keyset paging with mixed ascending and descending keys and `null_as` over nullable
/// columns: the pages, concatenated, equal one unpaged select, which equals the order
/// computed independently; a condition combines with paging; past the end is empty.
pub async fn keyset_paging(backend: Arc<dyn Backend>) -> Result<()> {
    let b = &*backend;
    let t = TenantId::new();
    let items = paging_items();
    insert_items(b, t, &items).await?;
    let def = b.schema().table(ITEMS)?.clone();
    let rows: Vec<Row> = items.iter().map(Item::row).collect();
    let orders = vec![
        vec![asc("name"), asc("id")],
        vec![
            nulls_as(desc("qty"), Value::Int(0)),
            asc("name"),
            desc("id"),
        ],
        vec![nulls_as(asc("tag"), Value::Text("".into())), asc("id")],
        vec![
            desc("amount"),
            nulls_as(asc("qty"), Value::Int(i64::MAX)),
            asc("id"),
        ],
        vec![
            desc("name_fold"),
            nulls_as(desc("tag"), Value::Text("t10".into())),
            desc("id"),
        ],
        vec![
            nulls_as(asc("qty"), Value::Int(i64::MIN)),
            desc("name"),
            asc("amount"),
            asc("id"),
        ],
        vec![desc("id")],
    ];
    let conds = vec![
        Cond::True,
        Cond::Or(vec![
            Cond::IsNull("qty".into()),
            cmp("amount", CmpOp::Gte, 0),
        ]),
    ];
    for cond in &conds {
        let subset: Vec<Row> = {
            let keep = ids_where(b, t, cond).await?;
            rows.iter()
                .filter(|r| keep.contains(&uuid_of(&r[ID])))
                .cloned()
                .collect()
        };
        for order in &orders {
            let mut s = Select::new(ITEMS, cond.clone());
            s.order = order.clone();
            let unpaged = b.select(t, &s).await?;
            assert_eq!(
                unpaged,
                expected_order(&def, order, &subset),
                "select with {order:?} where {cond:?} is not in the expected order"
            );
            for page in [1, 2, 5, 22, 23, 50] {
                let paged = read_pages(b, t, &s, page).await?;
                assert_eq!(
                    paged, unpaged,
                    "pages of {page} with {order:?} where {cond:?} differ from one select"
                );
            }
            if let Some(last) = unpaged.last() {
                let mut past = s.clone();
                past.after = Some(sort_values(&def, order, last));
                assert!(
                    b.select(t, &past).await?.is_empty(),
                    "a select after the last row returned rows"
                );
            }
        }
    }
    Ok(())
}

/// `limit` returns the first rows in order (0 returns none); counts match selects; an
/// empty tenant has no rows and counts 0; get of a missing key is None.
pub async fn limit_and_count(backend: Arc<dyn Backend>) -> Result<()> {
    let b = &*backend;
    let t = TenantId::new();
    let items = paging_items();
    insert_items(b, t, &items).await?;
    let def = b.schema().table(ITEMS)?.clone();
    let rows: Vec<Row> = items.iter().map(Item::row).collect();
    let order = vec![nulls_as(desc("qty"), Value::Int(0)), asc("id")];
    let all = expected_order(&def, &order, &rows);
    for limit in [0u32, 1, 3, 22, 23, 24, 1000] {
        let mut s = Select::new(ITEMS, Cond::True);
        s.order = order.clone();
        s.limit = Some(limit);
        let got = b.select(t, &s).await?;
        let n = (limit as usize).min(all.len());
        assert_eq!(got, all[..n], "select with limit {limit}");
    }
    assert_eq!(b.count(t, ITEMS, &Cond::True).await?, 23, "count(True)");
    assert_eq!(b.count(t, ITEMS, &Cond::False).await?, 0, "count(False)");
    let empty = TenantId::new();
    assert_eq!(
        b.count(empty, ITEMS, &Cond::True).await?,
        0,
        "count in an empty tenant"
    );
    assert!(
        b.select(empty, &Select::new(ITEMS, Cond::True))
            .await?
            .is_empty(),
        "select in an empty tenant"
    );
    assert_eq!(
        b.get(t, ITEMS, &key(Uuid::now_v7())).await?,
        None,
        "get of a missing key"
    );
    Ok(())
}

/// Aggregates: counts and exact sums beyond 2^53 per group, NULL as one group, NULLs
/// ignored by sums (a group of only NULLs sums to 0), several group-by columns; without
/// group-by exactly one row even when nothing matches; with group-by and nothing matching,
/// no rows.
pub async fn aggregates(backend: Arc<dyn Backend>) -> Result<()> {
    let b = &*backend;
    let t = TenantId::new();
    let p60 = 1i64 << 60;
    let p53 = 1i64 << 53;
    let specs: [(Option<&str>, Option<i64>, i64, &str); 6] = [
        (Some("a"), Some(1), p60 + 1, "g1"),
        (Some("a"), None, p60 + 3, "g2"),
        (Some("b"), Some(2), -7, "g1"),
        (None, None, p53 + 1, "g1"),
        (None, None, p53 + 1, "g1"),
        (Some("c"), Some(5), 0, "g2"),
    ];
    // Tags are unique, so the grouping key is name; tag only for single-row groups.
    let items: Vec<Item> = specs
        .iter()
        .enumerate()
        .map(|(i, (g, q, amount, fold))| {
            let mut item = Item::new(Uuid::now_v7(), g.unwrap_or("(none)"))
                .qty(*q)
                .amount(*amount)
                .tag(g.map(|g| format!("{g}{i}")).as_deref());
            item.name_fold = (*fold).into();
            item.name = g.map(str::to_owned).unwrap_or_default();
            item
        })
        .collect();
    // A NULL group needs a nullable column: group by qty too.
    insert_items(b, t, &items).await?;
    let measures = vec![
        Measure::Count,
        Measure::Sum("amount".into()),
        Measure::Sum("qty".into()),
    ];
    let agg = |group_by: &[&str], cond: Cond| Aggregate {
        table: ITEMS,
        cond,
        group_by: group_by.iter().map(|s| (*s).to_owned()).collect(),
        measures: measures.clone(),
        buckets: None,
    };
    let run = |a: Aggregate| async move {
        let mut rows = b.aggregate(t, &a).await?;
        rows.sort();
        Ok::<_, Error>(rows)
    };
    let i = Value::Int;
    let s = |x: &str| Value::Text(x.into());
    assert_eq!(
        run(agg(&["name"], Cond::True)).await?,
        vec![
            vec![s(""), i(2), i(2 * p53 + 2), i(0)],
            vec![s("a"), i(2), i(2 * p60 + 4), i(1)],
            vec![s("b"), i(1), i(-7), i(2)],
            vec![s("c"), i(1), i(0), i(5)],
        ],
        "group by name: exact sums, a group of NULLs sums to 0"
    );
    assert_eq!(
        run(agg(&["qty"], Cond::True)).await?,
        vec![
            vec![Value::Null, i(3), i(p60 + 3 + 2 * p53 + 2), i(0)],
            vec![i(1), i(1), i(p60 + 1), i(1)],
            vec![i(2), i(1), i(-7), i(2)],
            vec![i(5), i(1), i(0), i(5)],
        ],
        "group by a nullable column: NULL is one group"
    );
    assert_eq!(
        run(agg(&["name_fold", "qty"], Cond::True)).await?,
        vec![
            vec![s("g1"), Value::Null, i(2), i(2 * p53 + 2), i(0)],
            vec![s("g1"), i(1), i(1), i(p60 + 1), i(1)],
            vec![s("g1"), i(2), i(1), i(-7), i(2)],
            vec![s("g2"), Value::Null, i(1), i(p60 + 3), i(0)],
            vec![s("g2"), i(5), i(1), i(0), i(5)],
        ],
        "group by two columns"
    );
    let total = 2 * p60 + 4 - 7 + 2 * p53 + 2;
    assert_eq!(
        run(agg(&[], Cond::True)).await?,
        vec![vec![i(6), i(total), i(8)]],
        "no group-by: one row, exact total beyond 2^53"
    );
    assert_eq!(
        run(agg(&[], Cond::False)).await?,
        vec![vec![i(0), i(0), i(0)]],
        "no group-by and no rows: one row of zeros"
    );
    assert_eq!(
        run(agg(&["name"], Cond::False)).await?,
        Vec::<Row>::new(),
        "group-by and no rows: no rows"
    );
    assert_eq!(
        run(agg(&["name_fold"], cmp("amount", CmpOp::Gt, p53))).await?,
        vec![
            vec![s("g1"), i(3), i(p60 + 1 + 2 * p53 + 2), i(1)],
            vec![s("g2"), i(1), i(p60 + 3), i(0)],
        ],
        "aggregate with a condition"
    );
    let empty = TenantId::new();
    assert_eq!(
        b.aggregate(empty, &agg(&[], Cond::True)).await?,
        vec![vec![i(0), i(0), i(0)]],
        "aggregate in an empty tenant"
    );
    // Buckets: the range index first; NULLs, values below the first bound and from the
    // last bound on are left out; a bucket without rows has no row (also without
    // group-by); a condition still applies.
    let bucketed = |group_by: &[&str], cond: Cond, column: &str, bounds: Vec<Value>| {
        let mut a = agg(group_by, cond);
        a.buckets = Some(Buckets::new(column, bounds));
        a
    };
    assert_eq!(
        run(bucketed(
            &["name"],
            Cond::True,
            "qty",
            vec![i(1), i(2), i(5)]
        ))
        .await?,
        vec![
            vec![i(0), s("a"), i(1), i(p60 + 1), i(1)],
            vec![i(1), s("b"), i(1), i(-7), i(2)],
        ],
        "buckets of qty [1, 2) and [2, 5), grouped by name"
    );
    assert_eq!(
        run(bucketed(&[], Cond::True, "qty", vec![i(2), i(6)])).await?,
        vec![vec![i(0), i(2), i(-7), i(7)]],
        "one bucket, no group-by"
    );
    assert_eq!(
        run(bucketed(&[], Cond::True, "qty", vec![i(100), i(200)])).await?,
        Vec::<Row>::new(),
        "an empty bucket has no row, even without group-by"
    );
    assert_eq!(
        run(bucketed(
            &[],
            Cond::True,
            "amount",
            vec![i(p53 + 1), i(p60 + 1), i(p60 + 3), i(p60 + 4)]
        ))
        .await?,
        vec![
            vec![i(0), i(2), i(2 * p53 + 2), i(0)],
            vec![i(1), i(1), i(p60 + 1), i(1)],
            vec![i(2), i(1), i(p60 + 3), i(0)],
        ],
        "buckets of a column beyond 2^53, bounds included on the left"
    );
    assert_eq!(
        run(bucketed(
            &["name_fold"],
            cmp("amount", CmpOp::Lt, p60),
            "amount",
            vec![i(-10), i(0), i(p53 + 2)]
        ))
        .await?,
        vec![
            vec![i(0), s("g1"), i(1), i(-7), i(2)],
            vec![i(1), s("g1"), i(2), i(2 * p53 + 2), i(0)],
            vec![i(1), s("g2"), i(1), i(0), i(5)],
        ],
        "buckets with a condition and a group-by"
    );
    for bounds in [
        vec![i(1)],
        vec![i(2), i(2)],
        vec![i(3), i(1)],
        vec![i(1), Value::Null],
    ] {
        let e = b
            .aggregate(t, &bucketed(&[], Cond::True, "qty", bounds.clone()))
            .await;
        assert!(
            matches!(e, Err(Error::Config(_))),
            "bad bounds {bounds:?} are a Config error: {e:?}"
        );
    }
    let e = b
        .aggregate(t, &bucketed(&[], Cond::True, "nope", vec![i(1), i(2)]))
        .await;
    assert!(
        matches!(e, Err(Error::Config(_))),
        "unknown bucket column: {e:?}"
    );
    Ok(())
}

/// Unknown tables and columns (in conditions, sort keys, group-by, measures, updates),
/// including names carrying SQL, are Config errors whether or not the tenant has rows, and
/// the schema and data are unchanged afterwards.
pub async fn unknown_names(backend: Arc<dyn Backend>) -> Result<()> {
    let b = &*backend;
    let t = TenantId::new();
    let empty = TenantId::new();
    let item = Item::new(Uuid::now_v7(), "survivor").qty(Some(1));
    insert_items(b, t, std::slice::from_ref(&item)).await?;
    let bad_columns = [
        "nope",
        "name; DROP TABLE kit_items",
        "name) OR (1=1",
        "\"name\"",
        "tenant_id",
        "",
    ];
    for tenant in [t, empty] {
        for col in bad_columns {
            let conds = [
                Cond::Cmp(col.into(), CmpOp::Eq, 1.into()),
                Cond::In(col.into(), vec![1.into()]),
                Cond::IsNull(col.into()),
                Cond::Contains(col.into(), "x".into()),
                not(Cond::StartsWith(col.into(), "x".into())),
                Cond::Or(vec![Cond::True, Cond::IsNull(col.into())]),
            ];
            for cond in conds {
                let r = b.select(tenant, &Select::new(ITEMS, cond.clone())).await;
                assert!(
                    matches!(r, Err(Error::Config(_))),
                    "select where {cond:?} gave {r:?}, not a Config error"
                );
                let r = b.count(tenant, ITEMS, &cond).await;
                assert!(
                    matches!(r, Err(Error::Config(_))),
                    "count where {cond:?} gave {r:?}, not a Config error"
                );
                let r = commit(
                    b,
                    changeset(
                        tenant,
                        vec![Write::DeleteWhere {
                            table: ITEMS,
                            cond: cond.clone(),
                        }],
                    ),
                )
                .await;
                assert!(
                    matches!(r, Err(Error::Config(_))),
                    "delete where {cond:?} gave {r:?}, not a Config error"
                );
            }
            let mut s = Select::new(ITEMS, Cond::True);
            s.order = vec![asc(col), asc("id")];
            let r = b.select(tenant, &s).await;
            assert!(
                matches!(r, Err(Error::Config(_))),
                "order by {col:?} gave {r:?}"
            );
            for (group_by, measure) in [
                (vec![col.to_owned()], Measure::Count),
                (vec![], Measure::Sum(col.into())),
            ] {
                let a = Aggregate {
                    table: ITEMS,
                    cond: Cond::True,
                    group_by,
                    measures: vec![measure],
                    buckets: None,
                };
                let r = b.aggregate(tenant, &a).await;
                assert!(
                    matches!(r, Err(Error::Config(_))),
                    "aggregate {a:?} gave {r:?}"
                );
            }
        }
        for table in ["nope", "kit_items; DROP TABLE kit_items", "crm_events--"] {
            let r = b.get(tenant, table, &key(item.id)).await;
            assert!(
                matches!(r, Err(Error::Config(_))),
                "get from {table:?} gave {r:?}"
            );
            let r = b.count(tenant, table, &Cond::True).await;
            assert!(
                matches!(r, Err(Error::Config(_))),
                "count of {table:?} gave {r:?}"
            );
        }
    }
    let r = commit(
        b,
        changeset(t, vec![update(item.id, vec![("nope", 1.into())], None)]),
    )
    .await;
    assert!(
        matches!(r, Err(Error::Config(_))),
        "update of an unknown column gave {r:?}"
    );
    assert_eq!(
        all_items(b, t).await?,
        vec![item.row()],
        "the data changed after bad names"
    );
    Ok(())
}

/// `Cond::Custom` and custom sort keys over the core custom-value table: "has a value",
/// conditions on `int_val`/`text_val` (any of several values matches), negation never
/// unknown, values of another record kind or tenant never join, and sorting (with
/// `null_as` for records without a value) and keyset paging by a custom field.
pub async fn custom_fields(backend: Arc<dyn Backend>) -> Result<()> {
    let b = &*backend;
    let t = TenantId::new();
    let other = TenantId::new();
    let ids: Vec<Uuid> = (0..6).map(fixed_id).collect();
    let items: Vec<Item> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Item::new(*id, &format!("c{i}")).qty(Some(i as i64)))
        .collect();
    let kind = ITEM_KIND_NAME;
    let mut writes: Vec<Write> = items.iter().map(Item::insert).collect();
    writes.extend([
        custom_value(kind, "tier", ids[0], 0, Some(5), None),
        custom_value(kind, "tier", ids[1], 0, Some(10), None),
        custom_value(kind, "tier", ids[2], 0, Some(-3), None),
        custom_value(kind, "tier", ids[4], 0, Some(i64::MAX), None),
        custom_value(kind, "tier", ids[5], 0, None, Some("n/a")),
        custom_value("other_kind", "tier", ids[3], 0, Some(100), None),
        custom_value(kind, "color", ids[0], 0, None, Some("red")),
        custom_value(kind, "color", ids[1], 0, None, Some("green")),
        custom_value(kind, "color", ids[1], 1, None, Some("blue")),
        custom_value(kind, "color", ids[2], 0, None, Some("Blue")),
        custom_value(kind, "color", ids[3], 1, None, Some("%_")),
    ]);
    commit(b, changeset(t, writes)).await?;
    // Another tenant: the same record ids with values that would match.
    let mut other_writes: Vec<Write> = items.iter().map(Item::insert).collect();
    other_writes.extend([
        custom_value(kind, "tier", ids[3], 0, Some(1000), None),
        custom_value(kind, "color", ids[5], 0, None, Some("blue")),
    ]);
    commit(b, changeset(other, other_writes)).await?;

    let tier = |c: Option<Cond>| custom("tier", c);
    let color = |c: Option<Cond>| custom("color", c);
    let i = |n: usize| ids[n];
    let cases: Vec<(Cond, Vec<Uuid>)> = vec![
        (tier(None), vec![i(0), i(1), i(2), i(4), i(5)]),
        (
            tier(Some(cmp("int_val", CmpOp::Gt, 4))),
            vec![i(0), i(1), i(4)],
        ),
        (
            not(tier(Some(cmp("int_val", CmpOp::Gt, 4)))),
            vec![i(2), i(3), i(5)],
        ),
        (tier(Some(Cond::IsNull("int_val".into()))), vec![i(5)]),
        (tier(Some(cmp("int_val", CmpOp::Gt, 500))), vec![i(4)]),
        (not(tier(None)), vec![i(3)]),
        (color(Some(cmp("text_val", CmpOp::Eq, "blue"))), vec![i(1)]),
        (
            color(Some(Cond::Contains("text_val".into(), "l".into()))),
            vec![i(1), i(2)],
        ),
        (
            color(Some(Cond::StartsWith("text_val".into(), "B".into()))),
            vec![i(2)],
        ),
        (
            color(Some(Cond::Contains("text_val".into(), "_".into()))),
            vec![i(3)],
        ),
        (
            color(Some(Cond::In(
                "text_val".into(),
                vec!["red".into(), "green".into()],
            ))),
            vec![i(0), i(1)],
        ),
        (
            color(Some(not(cmp("text_val", CmpOp::Eq, "green")))),
            vec![i(0), i(1), i(2), i(3)],
        ),
        (
            Cond::And(vec![tier(None), color(None)]),
            vec![i(0), i(1), i(2)],
        ),
        (
            Cond::Or(vec![
                tier(Some(cmp("int_val", CmpOp::Lt, 0))),
                cmp("qty", CmpOp::Eq, 3),
            ]),
            vec![i(2), i(3)],
        ),
        (custom("missing", None), vec![]),
    ];
    for (cond, want) in cases {
        expect_ids(b, t, cond, &want, "custom-field condition").await?;
    }

    let orders: Vec<(Vec<OrderKey>, Vec<usize>)> = vec![
        (
            vec![
                custom_key("tier", "int_val", false, Value::Int(0)),
                asc("id"),
            ],
            vec![2, 3, 5, 0, 1, 4],
        ),
        (
            vec![
                custom_key("tier", "int_val", true, Value::Int(0)),
                desc("id"),
            ],
            vec![4, 1, 0, 5, 3, 2],
        ),
        (
            vec![
                custom_key("color", "text_val", false, Value::Text("".into())),
                desc("id"),
            ],
            vec![5, 4, 3, 2, 1, 0],
        ),
        (
            vec![
                custom_key("color", "text_val", true, Value::Text("zz".into())),
                asc("id"),
            ],
            vec![3, 4, 5, 0, 1, 2],
        ),
    ];
    for (order, want) in orders {
        let mut s = Select::new(ITEMS, Cond::True);
        s.order = order.clone();
        let got: Vec<Uuid> = b
            .select(t, &s)
            .await?
            .iter()
            .map(|r| uuid_of(&r[ID]))
            .collect();
        let want: Vec<Uuid> = want.into_iter().map(i).collect();
        assert_eq!(got, want, "custom sort {order:?}");
        // Keyset paging by a custom key: the position carries the custom value.
        let values: BTreeMap<Uuid, Value> = {
            let field = order[0].custom.clone().expect("custom key");
            let col = order[0].column.clone();
            let mut m = BTreeMap::new();
            for r in rows_of(b, t, VALUES_TABLE).await? {
                if r[0] == Value::Text(field.record_kind.clone())
                    && r[1] == Value::Text(field.key.clone())
                    && r[3] == Value::Int(0)
                {
                    let p = if col == "int_val" { 4 } else { 5 };
                    m.insert(uuid_of(&r[2]), r[p].clone());
                }
            }
            m
        };
        let mut paged = vec![];
        s.limit = Some(2);
        loop {
            let rows = b.select(t, &s).await?;
            let Some(last) = rows.last() else { break };
            let id = uuid_of(&last[ID]);
            let v = match values.get(&id).cloned().unwrap_or(Value::Null) {
                Value::Null => order[0].null_as.clone().expect("set"),
                v => v,
            };
            s.after = Some(vec![v, Value::Uuid(id)]);
            paged.extend(rows.iter().map(|r| uuid_of(&r[ID])));
            assert!(paged.len() <= 6, "custom-key paging does not end");
        }
        assert_eq!(paged, want, "keyset pages by custom key {order:?}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Model-based differential property test
// ---------------------------------------------------------------------------------------

const ALPHABET: &[&str] = &[
    "a", "A", "b", " ", "%", "_", "\\", "'", "!", "é", "e\u{301}", "İ", "ı", "ß", "😀", "-",
];
const TAGS: &[&str] = &["x", "X", "x ", "y", "ß", "ss", "%", "_"];
const POOL: usize = 12;

fn pool_id(i: usize) -> Uuid {
    // Not in index order, so that id order is not insertion order.
    fixed_id(((i * 5) % POOL) as u128 + 100)
}

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::collection::vec(prop::sample::select(ALPHABET), 0..4).prop_map(|v| v.concat()),
        1 => prop::sample::select(TAGS).prop_map(str::to_owned),
    ]
    .boxed()
}

fn int() -> BoxedStrategy<i64> {
    prop_oneof![
        4 => -3i64..4,
        1 => prop::sample::select(vec![
            i64::MIN,
            i64::MAX,
            1 << 53,
            (1 << 53) + 1,
            -(1 << 53) - 1,
        ]),
    ]
    .boxed()
}

fn amount() -> BoxedStrategy<i64> {
    prop_oneof![
        3 => -3i64..4,
        1 => prop::sample::select(vec![(1i64 << 53) + 1, (1 << 58) + 7, -(1 << 58)]),
    ]
    .boxed()
}

fn tag() -> BoxedStrategy<Option<String>> {
    prop_oneof![
        2 => Just(None),
        2 => prop::sample::select(TAGS).prop_map(|s| Some(s.to_owned())),
        1 => text().prop_map(Some),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
enum Op {
    Insert {
        id: usize,
        name: String,
        qty: Option<i64>,
        amount: i64,
        tag: Option<String>,
    },
    Update {
        id: usize,
        expect: Option<u64>,
        name: Option<String>,
        qty: Option<Option<i64>>,
        tag: Option<Option<String>>,
    },
    Delete {
        id: usize,
    },
    DeleteWhere(Cond),
    UpdateWhere {
        cond: Cond,
        qty: Option<i64>,
        tag: Option<String>,
    },
}

#[derive(Debug, Clone)]
struct Query {
    cond: Cond,
    order: Vec<OrderKey>,
    page: u32,
    group_by: Vec<String>,
}

/// A generated case: commits (each a list of writes) then queries.
#[derive(Debug, Clone)]
struct ModelCase {
    commits: Vec<Vec<Op>>,
    queries: Vec<Query>,
}

fn cmp_op() -> impl Strategy<Value = CmpOp> {
    prop::sample::select(vec![
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Lte,
        CmpOp::Gt,
        CmpOp::Gte,
    ])
}

fn opt_value<T: Into<Value> + std::fmt::Debug + 'static>(
    s: BoxedStrategy<T>,
) -> BoxedStrategy<Value> {
    prop_oneof![1 => Just(Value::Null), 6 => s.prop_map(|v| v.into())].boxed()
}

fn cond() -> BoxedStrategy<Cond> {
    // Nullable columns (tag, qty) come up twice as often: NULL handling is where backends
    // differ.
    let text_col = || prop::sample::select(vec!["name", "tag", "tag", "name_fold"]);
    let int_col = || prop::sample::select(vec!["qty", "qty", "amount", "version"]);
    let uuid = || (0..POOL).prop_map(|i| Value::Uuid(pool_id(i))).boxed();
    let leaf = prop_oneof![
        1 => Just(Cond::True),
        1 => Just(Cond::False),
        6 => (text_col(), cmp_op(), opt_value(text()))
            .prop_map(|(c, op, v)| Cond::Cmp(c.into(), op, v)),
        6 => (int_col(), cmp_op(), opt_value(int()))
            .prop_map(|(c, op, v)| Cond::Cmp(c.into(), op, v)),
        1 => (cmp_op(), prop_oneof![4 => uuid(), 1 => Just(Value::Null)])
            .prop_map(|(op, v)| Cond::Cmp("id".into(), op, v)),
        2 => (text_col(), prop::collection::vec(opt_value(text()), 0..4))
            .prop_map(|(c, vs)| Cond::In(c.into(), vs)),
        2 => (int_col(), prop::collection::vec(opt_value(int()), 0..4))
            .prop_map(|(c, vs)| Cond::In(c.into(), vs)),
        1 => prop::collection::vec(uuid(), 0..4).prop_map(|vs| Cond::In("id".into(), vs)),
        2 => prop::sample::select(vec!["qty", "tag", "name"])
            .prop_map(|c| Cond::IsNull(c.into())),
        3 => (text_col(), text()).prop_map(|(c, n)| Cond::Contains(c.into(), n)),
        3 => (text_col(), text()).prop_map(|(c, n)| Cond::StartsWith(c.into(), n)),
    ];
    leaf.prop_recursive(2, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Cond::And),
            prop::collection::vec(inner.clone(), 0..4).prop_map(Cond::Or),
            inner.prop_map(|c| Cond::Not(Box::new(c))),
        ]
    })
    .boxed()
}

fn order() -> impl Strategy<Value = Vec<OrderKey>> {
    let keys = vec!["name", "tag", "qty", "amount", "version", "name_fold"];
    (
        prop::sample::subsequence(keys, 0..=3).prop_shuffle(),
        prop::collection::vec(any::<bool>(), 6),
        any::<bool>(),
        prop::sample::select(vec![Value::Text("".into()), Value::Text("x".into())]),
        prop::sample::select(vec![
            Value::Int(0),
            Value::Int(i64::MIN),
            Value::Int(i64::MAX),
        ]),
    )
        .prop_map(|(cols, descs, id_desc, tag_null, qty_null)| {
            let mut order: Vec<OrderKey> = cols
                .into_iter()
                .zip(descs)
                .map(|(c, d)| {
                    let mut k = if d { desc(c) } else { asc(c) };
                    match c {
                        "tag" => k.null_as = Some(tag_null.clone()),
                        "qty" => k.null_as = Some(qty_null.clone()),
                        _ => {}
                    }
                    k
                })
                .collect();
            order.push(if id_desc { desc("id") } else { asc("id") });
            order
        })
}

fn op() -> impl Strategy<Value = Op> {
    let id = || 0..POOL;
    prop_oneof![
        6 => (id(), text(), prop::option::of(int()), amount(), tag()).prop_map(
            |(id, name, qty, amount, tag)| Op::Insert { id, name, qty, amount, tag }
        ),
        3 => (
            id(),
            // Mostly the current version (1 or 2) or none, sometimes stale.
            prop_oneof![3 => Just(None), 3 => Just(Some(1)), 1 => Just(Some(2)), 1 => Just(Some(0))],
            prop::option::of(text()),
            prop::option::of(prop::option::of(int())),
            prop::option::of(tag()),
        )
            .prop_map(|(id, expect, name, qty, tag)| Op::Update { id, expect, name, qty, tag }),
        1 => id().prop_map(|id| Op::Delete { id }),
        1 => cond().prop_map(Op::DeleteWhere),
        1 => (cond(), prop::option::of(int()), tag())
            .prop_map(|(cond, qty, tag)| Op::UpdateWhere { cond, qty, tag }),
    ]
}

fn model_case() -> impl Strategy<Value = ModelCase> {
    let query = (
        cond(),
        order(),
        1u32..7,
        prop::sample::subsequence(vec!["tag", "qty", "version", "name"], 0..=2),
    )
        .prop_map(|(cond, order, page, group_by)| Query {
            cond,
            order,
            page,
            group_by: group_by.into_iter().map(str::to_owned).collect(),
        });
    (
        prop::collection::vec(prop::collection::vec(op(), 1..3), 2..18),
        prop::collection::vec(query, 2..9),
    )
        .prop_map(|(commits, queries)| ModelCase { commits, queries })
}

fn op_write(op: &Op) -> Write {
    match op {
        Op::Insert {
            id,
            name,
            qty,
            amount,
            tag,
        } => {
            let mut item = Item::new(pool_id(*id), name).qty(*qty).amount(*amount);
            item.tag = tag.clone();
            item.insert()
        }
        Op::Update {
            id,
            expect,
            name,
            qty,
            tag,
        } => {
            let mut set: Vec<(&'static str, Value)> = vec![];
            if let Some(n) = name {
                set.push(("name", Value::Text(n.clone())));
                set.push(("name_fold", Value::Text(n.to_lowercase())));
            }
            if let Some(q) = qty {
                set.push(("qty", Value::opt_int(*q)));
            }
            if let Some(t) = tag {
                set.push(("tag", Value::opt_text(t.clone())));
            }
            update(pool_id(*id), set, *expect)
        }
        Op::Delete { id } => Write::Delete {
            table: ITEMS,
            key: key(pool_id(*id)),
        },
        Op::DeleteWhere(cond) => Write::DeleteWhere {
            table: ITEMS,
            cond: cond.clone(),
        },
        Op::UpdateWhere { cond, qty, tag } => Write::UpdateWhere {
            table: ITEMS,
            cond: cond.clone(),
            set: vec![
                ("qty", Value::opt_int(*qty)),
                ("tag", Value::opt_text(tag.clone())),
            ],
        },
    }
}

/// What a commit did, comparable across backends.
fn outcome(r: &Result<Commit>) -> std::result::Result<String, String> {
    match r {
        Ok(c) => Ok(format!("ok {:?}", c.events)),
        Err(Error::Conflict {
            record,
            expected,
            actual,
        }) => Ok(format!(
            "conflict {record} expected {expected} actual {actual}"
        )),
        Err(Error::NotFound { kind, id }) => Ok(format!("not found {kind} {id}")),
        Err(Error::Duplicate { .. }) => Ok("duplicate".into()),
        Err(e) => Err(format!("unexpected error: {e}")),
    }
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

async fn run_case(
    backend: &dyn Backend,
    case: &ModelCase,
) -> std::result::Result<(), TestCaseError> {
    let model = MemoryBackend::new(backend.schema().clone());
    let t = TenantId::new();
    let def = backend.schema().table(ITEMS).map_err(fail)?.clone();
    for (i, ops) in case.commits.iter().enumerate() {
        let mut cs = changeset(t, ops.iter().map(op_write).collect());
        let subject = pool_id(i % POOL);
        cs.audit.push(audit(subject, "*", None, Some("{}")));
        cs.events.push(event(
            "kit_item.updated",
            subject,
            serde_json::json!({ "commit": i }),
        ));
        let want = outcome(&model.commit(cs.clone()).await).map_err(fail)?;
        let got = outcome(&backend.commit(cs).await)
            .map_err(|e| fail(format!("commit {i}: the backend gave an {e}")))?;
        prop_assert_eq!(got, want, "commit {} has a different outcome", i);
    }
    let want = all_items(&model, t).await.map_err(fail)?;
    let got = all_items(backend, t).await.map_err(fail)?;
    prop_assert_eq!(got, want, "the tables differ after the commits");
    let want = rows_of(&model, t, EVENTS_TABLE).await.map_err(fail)?.len();
    let got = rows_of(backend, t, EVENTS_TABLE).await.map_err(fail)?.len();
    prop_assert_eq!(got, want, "the number of events differs");

    for q in &case.queries {
        let n_model = model.count(t, ITEMS, &q.cond).await.map_err(fail)?;
        let n = backend.count(t, ITEMS, &q.cond).await.map_err(fail)?;
        prop_assert_eq!(n, n_model, "count where {:?}", q.cond);

        let mut s = Select::new(ITEMS, q.cond.clone());
        s.order = q.order.clone();
        let unpaged = model.select(t, &s).await.map_err(fail)?;
        let got = backend.select(t, &s).await.map_err(fail)?;
        prop_assert_eq!(
            &got,
            &unpaged,
            "select where {:?} order {:?}",
            q.cond,
            q.order
        );
        prop_assert_eq!(got.len() as u64, n, "select and count disagree");

        let mut page = s.clone();
        page.limit = Some(q.page);
        let mut paged = vec![];
        loop {
            let want = model.select(t, &page).await.map_err(fail)?;
            let got = backend.select(t, &page).await.map_err(fail)?;
            prop_assert_eq!(
                &got,
                &want,
                "page after {:?} of {} where {:?} order {:?}",
                page.after,
                q.page,
                q.cond,
                q.order
            );
            let Some(last) = got.last() else { break };
            page.after = Some(sort_values(&def, &q.order, last));
            let full = got.len() == q.page as usize;
            paged.extend(got);
            if !full || paged.len() > POOL {
                break;
            }
        }
        prop_assert_eq!(&paged, &unpaged, "pages concatenated");

        let agg = Aggregate {
            table: ITEMS,
            cond: q.cond.clone(),
            group_by: q.group_by.clone(),
            measures: vec![Measure::Count, Measure::Sum("amount".into())],
            buckets: None,
        };
        let mut want = model.aggregate(t, &agg).await.map_err(fail)?;
        let mut got = backend.aggregate(t, &agg).await.map_err(fail)?;
        want.sort();
        got.sort();
        prop_assert_eq!(got, want, "aggregate {:?}", agg);
    }
    Ok(())
}

/// The model-based differential property test: random commits (inserts with NULLs,
/// hostile strings and extreme integers, versioned and unversioned updates, deletes,
/// delete-where, colliding keys and unique values) go to the backend under test and to a
/// fresh in-memory backend (the model); their outcomes (events numbered, Conflict,
/// NotFound, Duplicate) must agree, and then random conditions (nested And/Or/Not,
/// comparisons, In, IsNull, Contains, StartsWith) with random order keys and page sizes
/// must give identical counts, selects, pages and aggregates.
///
/// `open` is called once, on a multi-thread runtime this function builds (so call it
/// outside any runtime); each of the `cases` cases works in a fresh tenant. A failure
/// panics with the minimal failing case.
pub fn model_differential<F, Fut>(open: F, cases: u32) -> Result<()>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Arc<dyn Backend>>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::storage_from("building a tokio runtime", e))?;
    let backend = rt.block_on(open())?;
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 400,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&model_case(), |case| {
        rt.block_on(run_case(&*backend, &case))
    });
    match result {
        Ok(()) => Ok(()),
        Err(TestError::Fail(reason, case)) => panic!(
            "model differential on {}: {reason}\nminimal failing case: {case:#?}",
            backend.kind()
        ),
        Err(TestError::Abort(reason)) => {
            panic!("model differential on {} aborted: {reason}", backend.kind())
        }
    }
}
