//! Live tests of the SQL backends: SQLite (file and memory) always; PostgreSQL and MySQL
//! when `CRMKIT_TEST_POSTGRES_URL` / `CRMKIT_TEST_MYSQL_URL` are set (a server that does
//! not answer then fails the test). Each process uses its own fresh server databases;
//! tests share them through distinct random tenants.

use std::sync::Arc;

use crmkit_core::event::EVENTS_TABLE;
use crmkit_core::memory::MemoryBackend;
use crmkit_core::store::{
    Aggregate, CmpOp, ColumnDef, ColumnType, Cond, CustomRef, IndexDef, Measure, Migration,
    OrderKey, Row, SchemaStep, Select, TableDef, Value, Write,
};
use crmkit_core::{
    AuditChange, Backend, Changeset, Error, Fault, Module, Modules, NewEvent, RecordKind,
    RecordRef, TenantId,
};
use crmkit_sql::testing::{DatabaseHold, SharedDatabase, TestDatabase};
use uuid::Uuid;

const ITEM: &str = "tm_item";
const PAIR: &str = "tm_pair";

/// A test module; `versions` says how many of its migrations it knows.
struct TestModule {
    versions: usize,
}

impl Module for TestModule {
    fn name(&self) -> &'static str {
        "tm"
    }

    fn migrations(&self) -> Vec<Migration> {
        use ColumnType::*;
        let all = vec![
            Migration {
                version: 1,
                description: "items",
                steps: vec![SchemaStep::CreateTable(
                    TableDef::new(
                        ITEM,
                        [
                            ColumnDef::required("id", Uuid),
                            ColumnDef::required("name", Text(255)),
                            ColumnDef::optional("email", Text(100)),
                            ColumnDef::optional("n", Int),
                            ColumnDef::optional("body", LongText),
                            ColumnDef::required("flag", Bool),
                            ColumnDef::optional("day", Date),
                            ColumnDef::optional("owner", Uuid),
                            ColumnDef::required("version", Int),
                        ],
                        ["id"],
                    )
                    .index(IndexDef::unique("tm_item_email", ["email"]))
                    .index(IndexDef::new("tm_item_name", ["name"])),
                )],
            },
            Migration {
                version: 2,
                description: "status and pairs",
                steps: vec![
                    SchemaStep::AddColumn {
                        table: ITEM,
                        column: ColumnDef::required("status", Text(20))
                            .with_default(Value::from("new")),
                    },
                    SchemaStep::CreateTable(TableDef::new(
                        PAIR,
                        [
                            ColumnDef::required("a", Text(50)),
                            ColumnDef::required("b", Int),
                            ColumnDef::optional("note", Text(255)),
                        ],
                        ["a", "b"],
                    )),
                    SchemaStep::CreateIndex {
                        table: PAIR,
                        index: IndexDef::unique("tm_pair_note", ["note"]),
                    },
                ],
            },
        ];
        all.into_iter().take(self.versions).collect()
    }
}

fn modules(versions: usize) -> Modules {
    Modules::builder()
        .add(TestModule { versions })
        .build()
        .expect("modules")
}

/// The shared server databases of this process, dropped when the last test is done.
static PG: SharedDatabase = SharedDatabase::new("CRMKIT_TEST_POSTGRES_URL");
static MY: SharedDatabase = SharedDatabase::new("CRMKIT_TEST_MYSQL_URL");

/// A list of backends (or URLs) that keeps its server databases alive while it is iterated:
/// what the databases need (holds on shared ones, private ones themselves) is dropped with
/// the iterator, after the loop.
struct Listed<T> {
    items: std::vec::IntoIter<T>,
    _keep: Vec<Keep>,
}

/// Keeps a server database alive while it lives, and drops it after.
enum Keep {
    Shared { _hold: DatabaseHold },
    Private { _db: TestDatabase },
}

impl<T> Iterator for Listed<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.items.next()
    }
}

async fn server_db(db: &'static SharedDatabase) -> Option<(String, DatabaseHold)> {
    db.server_url()?;
    Some(
        tokio::task::spawn_blocking(move || db.lease())
            .await
            .expect("lease task")
            .unwrap_or_else(|e| panic!("{e}")),
    )
}

fn temp_sqlite_url() -> String {
    let path = std::env::temp_dir().join(format!("crmkit-sql-it-{}.db", Uuid::now_v7()));
    format!("sqlite://{}", path.display())
}

/// URLs of every backend under test (fresh SQLite databases, shared server databases).
async fn urls() -> Listed<(&'static str, String)> {
    let mut out = vec![
        ("sqlite-file", temp_sqlite_url()),
        ("sqlite-memory", "sqlite::memory:".to_owned()),
    ];
    let mut keep = vec![];
    for (name, db) in [("postgres", &PG), ("mysql", &MY)] {
        if let Some((u, hold)) = server_db(db).await {
            out.push((name, u));
            keep.push(Keep::Shared { _hold: hold });
        }
    }
    Listed {
        items: out.into_iter(),
        _keep: keep,
    }
}

/// URLs of databases no other test uses (for migration tests), dropped after the loop.
async fn private_urls() -> Listed<(&'static str, String)> {
    let mut out = vec![("sqlite-file", temp_sqlite_url())];
    let mut keep = vec![];
    for (name, var) in [
        ("postgres", "CRMKIT_TEST_POSTGRES_URL"),
        ("mysql", "CRMKIT_TEST_MYSQL_URL"),
    ] {
        if let Some(url) = std::env::var(var).ok().filter(|u| !u.is_empty()) {
            let db = tokio::task::spawn_blocking(move || TestDatabase::create(&url))
                .await
                .expect("create task")
                .unwrap_or_else(|e| panic!("{var} is set but the server failed: {e}"));
            out.push((name, db.url().to_owned()));
            keep.push(Keep::Private { _db: db });
        }
    }
    Listed {
        items: out.into_iter(),
        _keep: keep,
    }
}

async fn backends() -> Listed<(&'static str, Arc<dyn Backend>)> {
    let urls = urls().await;
    let mut out = vec![];
    for (name, url) in urls.items {
        let b = crmkit_sql::open(&url, &modules(2))
            .await
            .unwrap_or_else(|e| panic!("open {name}: {e}"));
        out.push((name, b));
    }
    Listed {
        items: out.into_iter(),
        _keep: urls._keep,
    }
}

fn cs(tenant: TenantId, writes: Vec<Write>) -> Changeset {
    Changeset {
        tenant,
        actor: None,
        origin: "test".into(),
        at: chrono::Utc::now(),
        writes,
        audit: vec![],
        events: vec![],
        cause: None,
    }
}

fn rec(id: Uuid) -> RecordRef {
    RecordRef::new(RecordKind::new(ITEM), id)
}

fn event(id: Uuid) -> NewEvent {
    NewEvent::new(
        "tm.changed",
        rec(id),
        vec!["name".into()],
        serde_json::json!({"k": 1}),
    )
}

fn item(id: Uuid, name: &str, email: Option<&str>, n: Option<i64>) -> Row {
    vec![
        Value::Uuid(id),
        Value::from(name),
        Value::opt_text(email),
        Value::opt_int(n),
        Value::Null,
        Value::Int(0),
        Value::Null,
        Value::Null,
        Value::Int(1),
        Value::from("new"),
    ]
}

fn insert(row: Row) -> Write {
    Write::Insert { table: ITEM, row }
}

async fn count(b: &dyn Backend, t: TenantId, table: &str) -> u64 {
    b.count(t, table, &Cond::True).await.expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_hostile_values() {
    let texts = [
        "it's",
        "\"quoted\"",
        "a; DROP TABLE tm_item; --",
        "' OR 1=1--",
        "back\\slash\\\\",
        "unicode: café Ærø 東京",
        "emoji 👩‍💻🎉",
        "rtl \u{202E}abc\u{202C} \u{200F}",
        "nul-free\ttab\nnewline",
        "%_!",
        "",
        "   trailing   ",
    ];
    let long = "x".repeat(255);
    for (name, b) in backends().await {
        let t = TenantId::new();
        let mut rows = vec![];
        for (i, s) in texts.iter().copied().chain([long.as_str()]).enumerate() {
            let mut row = item(Uuid::now_v7(), s, None, Some(i as i64));
            row[4] = Value::from(format!("{s}{s}"));
            row[6] = Value::from("2024-02-29");
            row[7] = Value::Uuid(Uuid::now_v7());
            rows.push(row);
        }
        let mut extremes = item(Uuid::now_v7(), "extremes", None, Some(i64::MIN));
        extremes[5] = Value::Int(1);
        extremes[8] = Value::Int(i64::MAX);
        rows.push(extremes);
        b.commit(cs(t, rows.iter().cloned().map(insert).collect()))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for row in &rows {
            let got = b.get(t, ITEM, &row[..1]).await.unwrap();
            assert_eq!(got.as_ref(), Some(row), "{name}");
            let found = b
                .select(
                    t,
                    &Select::new(ITEM, Cond::Cmp("name".into(), CmpOp::Eq, row[1].clone())),
                )
                .await
                .unwrap();
            assert_eq!(
                found,
                vec![row.clone()],
                "{name}: exact match of {:?}",
                row[1]
            );
        }
        let max = b
            .select(t, &Select::new(ITEM, Cond::eq("version", i64::MAX)))
            .await
            .unwrap();
        assert_eq!(max.len(), 1, "{name}");
        assert_eq!(count(&*b, t, ITEM).await, rows.len() as u64, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_conflicts_and_not_found() {
    for (name, b) in backends().await {
        let t = TenantId::new();
        let id = Uuid::now_v7();
        b.commit(cs(t, vec![insert(item(id, "a", None, None))]))
            .await
            .unwrap();
        let upd = |v: Option<u64>, id: Uuid, name: &str| Write::Update {
            table: ITEM,
            key: vec![Value::Uuid(id)],
            set: vec![("name", Value::from(name))],
            expect_version: v,
            record: rec(id),
        };
        b.commit(cs(t, vec![upd(Some(1), id, "b")])).await.unwrap();
        let row = b.get(t, ITEM, &[Value::Uuid(id)]).await.unwrap().unwrap();
        assert_eq!(
            (row[1].clone(), row[8].clone()),
            (Value::from("b"), Value::Int(2)),
            "{name}"
        );
        match b.commit(cs(t, vec![upd(Some(1), id, "c")])).await {
            Err(Error::Conflict {
                expected: 1,
                actual: 2,
                record,
            }) => assert_eq!(record, rec(id)),
            other => panic!("{name}: expected conflict, got {other:?}"),
        }
        let missing = Uuid::now_v7();
        for v in [Some(1), None] {
            match b.commit(cs(t, vec![upd(v, missing, "x")])).await {
                Err(Error::NotFound { kind, id: got }) => {
                    assert_eq!((kind.as_str(), got), (ITEM, missing.to_string()))
                }
                other => panic!("{name}: expected not found, got {other:?}"),
            }
        }
        // Setting identical values without a version still finds the row (MySQL counts
        // matched rows, not changed ones).
        b.commit(cs(t, vec![upd(None, id, "b")]))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // Another tenant cannot see or update it.
        let other = TenantId::new();
        assert!(matches!(
            b.commit(cs(other, vec![upd(Some(2), id, "evil")])).await,
            Err(Error::NotFound { .. })
        ));
        let row = b.get(t, ITEM, &[Value::Uuid(id)]).await.unwrap().unwrap();
        assert_eq!(row[1], Value::from("b"), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_violations_are_duplicates_and_leave_nothing() {
    for (name, b) in backends().await {
        let t = TenantId::new();
        b.commit(cs(
            t,
            vec![insert(item(Uuid::now_v7(), "a", Some("x@y"), None))],
        ))
        .await
        .unwrap();
        let fresh = Uuid::now_v7();
        let r = b
            .commit(cs(
                t,
                vec![
                    insert(item(fresh, "b", Some("other@y"), None)),
                    insert(item(Uuid::now_v7(), "c", Some("x@y"), None)),
                ],
            ))
            .await;
        match r {
            Err(Error::Duplicate {
                kind,
                field,
                existing: None,
            }) => {
                assert_eq!(
                    (kind.as_str(), field.as_str()),
                    (ITEM, "tm_item_email"),
                    "{name}"
                )
            }
            other => panic!("{name}: expected duplicate, got {other:?}"),
        }
        assert_eq!(
            b.get(t, ITEM, &[Value::Uuid(fresh)]).await.unwrap(),
            None,
            "{name}"
        );
        assert_eq!(count(&*b, t, ITEM).await, 1, "{name}");
        // NULLs never collide; another tenant may use the same value.
        b.commit(cs(
            t,
            vec![
                insert(item(Uuid::now_v7(), "n1", None, None)),
                insert(item(Uuid::now_v7(), "n2", None, None)),
            ],
        ))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        b.commit(cs(
            TenantId::new(),
            vec![insert(item(Uuid::now_v7(), "a", Some("x@y"), None))],
        ))
        .await
        .unwrap();
        // Primary key collision.
        let id = Uuid::now_v7();
        b.commit(cs(t, vec![insert(item(id, "p", None, None))]))
            .await
            .unwrap();
        match b
            .commit(cs(t, vec![insert(item(id, "q", None, None))]))
            .await
        {
            Err(Error::Duplicate { field, .. }) => assert_eq!(field, "id", "{name}"),
            other => panic!("{name}: expected duplicate id, got {other:?}"),
        }
        // An update into a taken unique value.
        let upd = Write::Update {
            table: ITEM,
            key: vec![Value::Uuid(id)],
            set: vec![("email", Value::from("x@y"))],
            expect_version: Some(1),
            record: rec(id),
        };
        assert!(matches!(
            b.commit(cs(t, vec![upd])).await,
            Err(Error::Duplicate { field, .. }) if field == "tm_item_email"
        ));
        // The composite-key table created by a later migration.
        let pair = |note: &str| Write::Insert {
            table: PAIR,
            row: vec![Value::from("k"), Value::Int(1), Value::from(note)],
        };
        b.commit(cs(t, vec![pair("one")])).await.unwrap();
        assert!(matches!(
            b.commit(cs(t, vec![pair("two")])).await,
            Err(Error::Duplicate { field, .. }) if field == "id"
        ));
    }
}

fn full_changeset(t: TenantId) -> (Changeset, Uuid, Uuid) {
    let (a, c) = (Uuid::now_v7(), Uuid::now_v7());
    let mut cs = cs(
        t,
        vec![
            insert(item(a, "a", Some(&format!("{a}@x")), Some(1))),
            insert(item(c, "c", Some(&format!("{c}@x")), Some(2))),
        ],
    );
    cs.audit.push(AuditChange {
        record: rec(a),
        field: "*".into(),
        old: None,
        new: Some("{}".into()),
    });
    cs.events = vec![event(a), event(c)];
    (cs, a, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_roll_back_every_step() {
    for (name, b) in backends().await {
        let t = TenantId::new();
        // Steps: 2 rows, 1 audit row, the sequence, 2 events.
        for at in 0..6 {
            b.inject_fault(Some(Fault::FailAtWrite(at)));
            let (changes, a, _) = full_changeset(t);
            match b.commit(changes).await {
                Err(Error::Storage { .. }) => {}
                other => panic!("{name}: fault at {at}: {other:?}"),
            }
            assert_eq!(b.get(t, ITEM, &[Value::Uuid(a)]).await.unwrap(), None);
            for table in [ITEM, EVENTS_TABLE, crmkit_core::event::AUDIT_TABLE] {
                assert_eq!(
                    count(&*b, t, table).await,
                    0,
                    "{name}: {table} after fault {at}"
                );
            }
        }
        b.inject_fault(Some(Fault::FailAtWrite(6)));
        let (changes, ..) = full_changeset(t);
        assert_eq!(
            b.commit(changes).await.unwrap().events,
            Some((1, 2)),
            "{name}"
        );
        b.inject_fault(None);
        let (changes, ..) = full_changeset(t);
        assert_eq!(
            b.commit(changes).await.unwrap().events,
            Some((3, 4)),
            "{name}"
        );
        assert_eq!(count(&*b, t, EVENTS_TABLE).await, 4, "{name}");
        assert_eq!(
            count(&*b, t, crmkit_core::event::AUDIT_TABLE).await,
            2,
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_sequence_is_gap_free_under_concurrency() {
    for (name, b) in backends().await {
        let t = TenantId::new();
        let mut tasks = vec![];
        for task in 0..16 {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = vec![];
                for i in 0..8 {
                    let id = Uuid::now_v7();
                    let mut c = cs(t, vec![insert(item(id, "c", None, Some(task)))]);
                    c.events = (0..(1 + (i % 2))).map(|_| event(id)).collect();
                    let r = b.commit(c).await.expect("commit");
                    got.push(r.events.expect("events"));
                }
                got
            }));
        }
        let mut seqs = vec![];
        for task in tasks {
            for (first, last) in task.await.unwrap() {
                seqs.extend(first..=last);
            }
        }
        seqs.sort_unstable();
        let n = seqs.len() as u64;
        assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "{name}");
        assert_eq!(count(&*b, t, EVENTS_TABLE).await, n, "{name}");
        let stored = b
            .select(
                t,
                &Select {
                    order: vec![key("seq", false)],
                    ..Select::new(EVENTS_TABLE, Cond::True)
                },
            )
            .await
            .unwrap();
        let stored: Vec<u64> = stored
            .iter()
            .map(|r| r[0].as_int().unwrap() as u64)
            .collect();
        assert_eq!(stored, (1..=n).collect::<Vec<_>>(), "{name}");
    }
}

fn key(column: &str, desc: bool) -> OrderKey {
    OrderKey {
        column: column.into(),
        desc,
        null_as: None,
        custom: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated() {
    for (name, b) in backends().await {
        let (ta, tb) = (TenantId::new(), TenantId::new());
        let ida = Uuid::now_v7();
        let idb = Uuid::now_v7();
        b.commit(cs(ta, vec![insert(item(ida, "same", Some("e"), Some(5)))]))
            .await
            .unwrap();
        b.commit(cs(tb, vec![insert(item(idb, "same", Some("e"), Some(7)))]))
            .await
            .unwrap();
        assert_eq!(
            b.get(ta, ITEM, &[Value::Uuid(idb)]).await.unwrap(),
            None,
            "{name}"
        );
        let all = b.select(ta, &Select::new(ITEM, Cond::True)).await.unwrap();
        assert_eq!(all.len(), 1, "{name}");
        assert_eq!(all[0][0], Value::Uuid(ida));
        let agg = Aggregate {
            table: ITEM,
            cond: Cond::True,
            group_by: vec![],
            measures: vec![Measure::Count, Measure::Sum("n".into())],
            buckets: None,
        };
        assert_eq!(
            b.aggregate(ta, &agg).await.unwrap(),
            vec![vec![Value::Int(1), Value::Int(5)]],
            "{name}"
        );
        // Deletes as tenant A never touch B's row.
        b.commit(cs(
            ta,
            vec![
                Write::Delete {
                    table: ITEM,
                    key: vec![Value::Uuid(idb)],
                },
                Write::DeleteWhere {
                    table: ITEM,
                    cond: Cond::eq("name", "same"),
                },
            ],
        ))
        .await
        .unwrap();
        assert_eq!(count(&*b, ta, ITEM).await, 0, "{name}");
        assert!(
            b.get(tb, ITEM, &[Value::Uuid(idb)])
                .await
                .unwrap()
                .is_some(),
            "{name}"
        );
        assert_eq!(
            b.aggregate(ta, &agg).await.unwrap(),
            vec![vec![Value::Int(0), Value::Int(0)]],
            "{name}: an empty aggregate is one row of zeros"
        );
    }
}

/// A data set with NULLs, mixed case, unicode, LIKE metacharacters and custom values.
fn dataset() -> (Vec<Write>, Vec<Uuid>) {
    let names = [
        "apple",
        "Apple",
        "APPLE",
        "banana",
        "Äpfel",
        "zebra",
        "50% off",
        "a_b",
        "a!b",
        "ab",
        "émile",
        "Zoë",
        "",
        "apple pie",
        "appl",
        "ab ",
    ];
    let mut writes = vec![];
    let mut ids = vec![];
    for (i, n) in names.iter().enumerate() {
        let id = Uuid::now_v7();
        ids.push(id);
        let num = if i % 4 == 0 {
            None
        } else {
            Some((i as i64 % 5) - 2)
        };
        let email = if i % 3 == 0 {
            None
        } else {
            Some(format!("e{i}@x"))
        };
        let mut row = item(id, n, email.as_deref(), num);
        row[4] = if i % 2 == 0 {
            Value::Null
        } else {
            Value::from(format!("body {n}"))
        };
        row[5] = Value::Int((i % 2) as i64);
        writes.push(insert(row));
        if i % 3 != 1 {
            writes.push(Write::Insert {
                table: crmkit_core::custom::VALUES_TABLE,
                row: vec![
                    Value::from(ITEM),
                    Value::from("tier"),
                    Value::Uuid(id),
                    Value::Int(0),
                    Value::Int((i % 4) as i64),
                    Value::from(["gold", "Silver", "bronze", "ärz"][i % 4]),
                    Value::Null,
                ],
            });
        }
    }
    (writes, ids)
}

fn tier() -> CustomRef {
    CustomRef {
        record_kind: ITEM.into(),
        key: "tier".into(),
    }
}

fn conds() -> Vec<Cond> {
    let c = |col: &str, op, v: Value| Cond::Cmp(col.into(), op, v);
    vec![
        Cond::True,
        Cond::False,
        c("n", CmpOp::Gt, Value::Int(0)),
        c("n", CmpOp::Ne, Value::Int(1)),
        c("n", CmpOp::Eq, Value::Null),
        Cond::Not(Box::new(c("n", CmpOp::Gt, Value::Int(0)))),
        Cond::Not(Box::new(Cond::IsNull("email".into()))),
        Cond::In("n".into(), vec![]),
        Cond::In("n".into(), vec![Value::Int(1), Value::Null]),
        Cond::Not(Box::new(Cond::In(
            "n".into(),
            vec![Value::Int(1), Value::Null],
        ))),
        Cond::Not(Box::new(Cond::In("n".into(), vec![Value::Int(1)]))),
        Cond::Contains("name".into(), "pp".into()),
        Cond::Contains("name".into(), "%".into()),
        Cond::Contains("name".into(), "_".into()),
        Cond::Contains("name".into(), "!".into()),
        Cond::StartsWith("name".into(), "a".into()),
        Cond::StartsWith("name".into(), "A".into()),
        Cond::StartsWith("name".into(), "a_".into()),
        Cond::StartsWith("name".into(), "".into()),
        Cond::Contains("body".into(), "apple".into()),
        Cond::Contains("n".into(), "-".into()),
        Cond::Or(vec![
            c("n", CmpOp::Lt, Value::Int(0)),
            Cond::And(vec![
                Cond::IsNull("n".into()),
                c("flag", CmpOp::Eq, Value::Int(1)),
            ]),
        ]),
        Cond::Not(Box::new(Cond::Or(vec![
            c("n", CmpOp::Gte, Value::Int(1)),
            Cond::IsNull("body".into()),
        ]))),
        Cond::And(vec![]),
        Cond::Or(vec![]),
        c("name", CmpOp::Gt, Value::from("apple")),
        c("name", CmpOp::Lte, Value::from("Zoë")),
        Cond::Custom {
            field: tier(),
            cond: None,
        },
        Cond::Custom {
            field: tier(),
            cond: Some(Box::new(c("int_val", CmpOp::Gte, Value::Int(2)))),
        },
        Cond::Not(Box::new(Cond::Custom {
            field: tier(),
            cond: Some(Box::new(Cond::StartsWith("text_val".into(), "S".into()))),
        })),
    ]
}

fn orders() -> Vec<Vec<OrderKey>> {
    let k = |c: &str, desc: bool, null_as: Option<Value>| OrderKey {
        column: c.into(),
        desc,
        null_as,
        custom: None,
    };
    let custom = |c: &str, desc: bool, null_as: Value| OrderKey {
        column: c.into(),
        desc,
        null_as: Some(null_as),
        custom: Some(tier()),
    };
    vec![
        vec![],
        vec![k("name", false, None), k("id", false, None)],
        vec![k("name", true, None), k("id", true, None)],
        vec![
            k("n", true, Some(Value::Int(-100))),
            k("name", false, None),
            k("id", false, None),
        ],
        vec![k("n", false, None), k("id", false, None)],
        vec![k("n", true, None), k("id", true, None)],
        vec![
            k("body", false, Some(Value::from(""))),
            k("id", false, None),
        ],
        vec![
            custom("text_val", false, Value::from("")),
            k("id", false, None),
        ],
        vec![
            custom("int_val", true, Value::Int(-1)),
            k("name", false, None),
            k("id", true, None),
        ],
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selects_match_the_memory_backend() {
    let (writes, _) = dataset();
    let mods = modules(2);
    let memory = MemoryBackend::new((**mods.schema()).clone());
    let t = TenantId::new();
    memory.commit(cs(t, writes.clone())).await.unwrap();
    for (name, b) in backends().await {
        let bt = TenantId::new();
        b.commit(cs(bt, writes.clone())).await.unwrap();
        // Noise in another tenant.
        let (noise, _) = dataset();
        b.commit(cs(TenantId::new(), noise)).await.unwrap();
        for cond in conds() {
            for order in orders() {
                let s = Select {
                    table: ITEM,
                    cond: cond.clone(),
                    order: order.clone(),
                    after: None,
                    limit: None,
                    omit: vec![],
                };
                let want = memory.select(t, &s).await.unwrap();
                let got = b
                    .select(bt, &s)
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e} for {s:?}"));
                assert_eq!(got, want, "{name}: {cond:?} ordered by {order:?}");
            }
            let want = memory.count(t, ITEM, &cond).await.unwrap();
            assert_eq!(
                b.count(bt, ITEM, &cond).await.unwrap(),
                want,
                "{name}: count {cond:?}"
            );
        }
        // Keyset pages walk the same order as one full select.
        for order in orders().into_iter().filter(|o| !o.is_empty()) {
            let full = memory
                .select(
                    t,
                    &Select {
                        order: order.clone(),
                        ..Select::new(ITEM, Cond::True)
                    },
                )
                .await
                .unwrap();
            let mut after: Option<Vec<Value>> = None;
            let mut walked = vec![];
            loop {
                let s = Select {
                    table: ITEM,
                    cond: Cond::True,
                    order: order.clone(),
                    after: after.clone(),
                    limit: Some(4),
                    omit: vec![],
                };
                let want = memory.select(t, &s).await.unwrap();
                let page = b.select(bt, &s).await.unwrap();
                assert_eq!(page, want, "{name}: page after {after:?} by {order:?}");
                if page.is_empty() {
                    break;
                }
                let last = page.last().unwrap().clone();
                after = Some(sort_key(&order, &last, &writes));
                walked.extend(page);
            }
            assert_eq!(walked, full, "{name}: pages by {order:?}");
        }
        // Aggregates.
        for group_by in [
            vec![],
            vec!["flag".to_owned()],
            vec!["n".to_owned(), "flag".to_owned()],
            vec!["email".to_owned()],
        ] {
            for cond in [Cond::True, Cond::False, Cond::IsNull("n".into())] {
                let agg = Aggregate {
                    table: ITEM,
                    cond: cond.clone(),
                    group_by: group_by.clone(),
                    measures: vec![
                        Measure::Count,
                        Measure::Sum("n".into()),
                        Measure::Sum("flag".into()),
                    ],
                    buckets: None,
                };
                assert_eq!(
                    b.aggregate(bt, &agg).await.unwrap(),
                    memory.aggregate(t, &agg).await.unwrap(),
                    "{name}: {agg:?}"
                );
            }
        }
    }
}

/// The keyset values of a row for an order (NULLs replaced), as a caller computes them.
fn sort_key(order: &[OrderKey], row: &Row, writes: &[Write]) -> Vec<Value> {
    let pos = |c: &str| {
        [
            "id", "name", "email", "n", "body", "flag", "day", "owner", "version", "status",
        ]
        .iter()
        .position(|x| *x == c)
        .unwrap()
    };
    order
        .iter()
        .map(|o| {
            let v = match &o.custom {
                None => row[pos(&o.column)].clone(),
                Some(_) => writes
                    .iter()
                    .find_map(|w| match w {
                        Write::Insert { table, row: cv }
                            if *table == crmkit_core::custom::VALUES_TABLE && cv[2] == row[0] =>
                        {
                            Some(if o.column == "int_val" {
                                cv[4].clone()
                            } else {
                                cv[5].clone()
                            })
                        }
                        _ => None,
                    })
                    .unwrap_or(Value::Null),
            };
            match (v, &o.null_as) {
                (Value::Null, Some(sub)) => sub.clone(),
                (v, _) => v,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sums_are_exact_and_never_overflow() {
    let big = (1i64 << 53) + 1;
    for (name, b) in backends().await {
        let t = TenantId::new();
        let writes = (0..3)
            .map(|i| insert(item(Uuid::now_v7(), "s", None, Some(big + i))))
            .collect();
        b.commit(cs(t, writes)).await.unwrap();
        let agg = Aggregate {
            table: ITEM,
            cond: Cond::True,
            group_by: vec!["name".into()],
            measures: vec![Measure::Sum("n".into()), Measure::Count],
            buckets: None,
        };
        assert_eq!(
            b.aggregate(t, &agg).await.unwrap(),
            vec![vec![
                Value::from("s"),
                Value::Int(3 * big + 3),
                Value::Int(3)
            ]],
            "{name}"
        );
        let t2 = TenantId::new();
        let writes = (0..2)
            .map(|_| insert(item(Uuid::now_v7(), "o", None, Some(i64::MAX))))
            .collect();
        b.commit(cs(t2, writes)).await.unwrap();
        // Past 2^63 the sum is exact decimal text (`Value::sum`), not an overflow error.
        assert_eq!(
            b.aggregate(t2, &agg).await.unwrap(),
            vec![vec![
                Value::from("o"),
                Value::Text((2 * i128::from(i64::MAX)).to_string()),
                Value::Int(2)
            ]],
            "{name}"
        );
        // Unknown identifiers are Config errors, never SQL.
        let bad = Select::new(ITEM, Cond::eq("name; DROP TABLE tm_item", "x"));
        assert!(
            matches!(b.select(t, &bad).await, Err(Error::Config(_))),
            "{name}"
        );
        assert!(matches!(
            b.count(t, "nope", &Cond::True).await,
            Err(Error::Config(_))
        ));
        assert!(matches!(
            b.commit(cs(
                t,
                vec![Write::DeleteWhere {
                    table: "nope",
                    cond: Cond::True
                }]
            ))
            .await,
            Err(Error::Config(_))
        ));
        assert_eq!(count(&*b, t, ITEM).await, 3, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_upgrade_and_refuse_newer_schemas() {
    for (name, url) in private_urls().await {
        let v1 = crmkit_sql::open(&url, &modules(1))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let t = TenantId::new();
        let id = Uuid::now_v7();
        let mut row = item(id, "old", None, Some(1));
        row.pop(); // v1 has no status column
        v1.commit(cs(t, vec![insert(row)])).await.unwrap();
        drop(v1);
        let v2 = crmkit_sql::open(&url, &modules(2))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = v2.get(t, ITEM, &[Value::Uuid(id)]).await.unwrap().unwrap();
        assert_eq!(
            got[9],
            Value::from("new"),
            "{name}: default for existing rows"
        );
        v2.commit(cs(
            t,
            vec![Write::Insert {
                table: PAIR,
                row: vec![Value::from("a"), Value::Int(1), Value::Null],
            }],
        ))
        .await
        .unwrap();
        drop(v2);
        // Opening again is a no-op; concurrent opens serialize.
        let (m1, m2) = (modules(2), modules(2));
        let (a, b) = tokio::join!(crmkit_sql::open(&url, &m1), crmkit_sql::open(&url, &m2));
        a.unwrap();
        b.unwrap();
        match crmkit_sql::open(&url, &modules(1)).await {
            Err(Error::SchemaTooNew {
                module,
                found,
                supported,
            }) => {
                assert_eq!((module.as_str(), found, supported), ("tm", 2, 1), "{name}")
            }
            Err(e) => panic!("{name}: expected SchemaTooNew, got {e}"),
            Ok(_) => panic!("{name}: expected SchemaTooNew, got a backend"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_urls_are_config_errors() {
    for url in ["nosuch://x", "", "oracle://db"] {
        assert!(
            matches!(
                crmkit_sql::open(url, &modules(1)).await,
                Err(Error::Config(_))
            ),
            "{url}"
        );
    }
    assert!(matches!(
        crmkit_sql::testing::fresh_database("sqlite::memory:").await,
        Err(Error::Config(_))
    ));
}

/// `explain_select` shows the SQL a select runs and SQLite's plan for it: a range on an
/// index (tenant first) for a filter and order on its column, a scan of the table (and a
/// sort) for a column without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_explains_the_selects_it_runs() {
    let b = crmkit_sql::SqliteBackend::open("sqlite::memory:", &modules(1))
        .await
        .expect("open");
    let t = TenantId::new();
    let mut s = Select::new(ITEM, Cond::Cmp("name".into(), CmpOp::Lte, "m".into()));
    s.order = vec![OrderKey::asc("name")];
    s.limit = Some(10);
    let plan = b.explain_select(t, &s).await.expect("explain");
    assert!(plan.sql.starts_with("SELECT "), "{plan:?}");
    assert!(plan.sql.contains("LIMIT"), "{plan:?}");
    assert_eq!(
        plan.steps,
        ["SEARCH tm_item USING INDEX tm_item_name (tenant_id=? AND name<?)"],
        "{plan:?}"
    );
    let mut s = Select::new(ITEM, Cond::Cmp("n".into(), CmpOp::Gt, Value::Int(3)));
    s.order = vec![OrderKey::asc("n")];
    let plan = b.explain_select(t, &s).await.expect("explain");
    assert!(
        plan.steps.iter().any(|l| l.contains("TEMP B-TREE")),
        "no index on n: {plan:?}"
    );
    // A select the schema does not allow is refused before any SQL.
    let bad = Select::new("tm_nosuch", Cond::True);
    assert!(b.explain_select(t, &bad).await.is_err());
}

/// A task that loops on SQLite reads lets the other tasks of its worker run: every read
/// spends the task's cooperative budget, so it yields now and then. On a one-worker
/// runtime the reader loops until a task spawned after it has set a flag; without the
/// yield point (a read on a free connection never returns Pending) it would spin through
/// all its reads first and never see the flag.
#[test]
fn a_reading_loop_lets_other_tasks_run() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let url = temp_sqlite_url();
    let seen = rt.block_on(async {
        let b = Arc::new(
            crmkit_sql::SqliteBackend::open(&url, &modules(1))
                .await
                .expect("open"),
        );
        let t = TenantId::new();
        let flag = Arc::new(AtomicBool::new(false));
        let reader = {
            let (b, flag) = (b.clone(), flag.clone());
            tokio::spawn(async move {
                for _ in 0..100_000 {
                    if flag.load(Ordering::SeqCst) {
                        return true;
                    }
                    b.get(t, ITEM, &[Value::Uuid(Uuid::nil())])
                        .await
                        .expect("get");
                }
                false
            })
        };
        let other = {
            let flag = flag.clone();
            tokio::spawn(async move { flag.store(true, Ordering::SeqCst) })
        };
        other.await.expect("the other task");
        reader.await.expect("the reader")
    });
    if let Some(path) = url.strip_prefix("sqlite://") {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
    }
    assert!(
        seen,
        "the reader saw the other task's flag before its last read"
    );
}
