//! Golden SQL per dialect for representative statements (no database needed).

use std::sync::Arc;

use crmkit_core::Modules;
use crmkit_core::id::{RecordKind, RecordRef, TenantId};
use crmkit_core::store::{
    Aggregate, CmpOp, ColumnDef, ColumnType, Cond, CustomRef, IndexDef, Measure, Migration,
    ModuleMigrations, OrderKey, Schema, SchemaStep, Select, TableDef, Value,
};

use super::{Bind, Renderer, like_escape, parse_sum};
use crate::dialect::Dialect;

fn item() -> TableDef {
    use ColumnType::*;
    TableDef::new(
        "tm_item",
        [
            ColumnDef::required("id", Uuid),
            ColumnDef::required("name", Text(100)),
            ColumnDef::optional("n", Int),
            ColumnDef::optional("body", LongText),
            ColumnDef::required("version", Int),
        ],
        ["id"],
    )
    .index(IndexDef::unique("tm_item_name", ["name"]))
}

fn renderer(d: Dialect) -> Renderer {
    let core = Modules::builder().build().unwrap();
    let mut mods: Vec<ModuleMigrations> = core.schema().modules().to_vec();
    mods.push(ModuleMigrations {
        module: "tm",
        migrations: vec![Migration {
            version: 1,
            description: "items",
            steps: vec![SchemaStep::CreateTable(item())],
        }],
    });
    Renderer::new(
        d,
        Arc::new(Schema::build(mods).unwrap()),
        "utf8mb4_nopad_bin",
    )
}

fn tenant() -> TenantId {
    TenantId::from_uuid(uuid::Uuid::nil())
}

fn check(d: Dialect, sql: &str, expected: &str) {
    assert_eq!(sql, expected, "dialect {d:?}");
}

#[test]
fn create_table() {
    let want = [
        (
            Dialect::Sqlite,
            vec![
                r#"CREATE TABLE "tm_item" ( "tenant_id" varchar(36) NOT NULL, "id" varchar(36) NOT NULL, "name" text NOT NULL, "n" integer NULL, "body" text NULL, "version" integer NOT NULL, PRIMARY KEY ("tenant_id", "id") ) WITHOUT ROWID"#,
                r#"CREATE UNIQUE INDEX "tm_item_name" ON "tm_item" ("tenant_id", "name")"#,
            ],
        ),
        (
            Dialect::Postgres,
            vec![
                r#"CREATE TABLE "tm_item" ( "tenant_id" varchar(36) COLLATE "C" NOT NULL, "id" varchar(36) COLLATE "C" NOT NULL, "name" varchar(100) COLLATE "C" NOT NULL, "n" bigint NULL, "body" text COLLATE "C" NULL, "version" bigint NOT NULL, PRIMARY KEY ("tenant_id", "id") )"#,
                r#"CREATE UNIQUE INDEX "tm_item_name" ON "tm_item" ("tenant_id", "name")"#,
            ],
        ),
        (
            Dialect::Mysql,
            vec![
                r#"CREATE TABLE `tm_item` ( `tenant_id` varchar(36) NOT NULL, `id` varchar(36) NOT NULL, `name` varchar(100) NOT NULL, `n` bigint NULL, `body` MEDIUMTEXT NULL, `version` bigint NOT NULL, PRIMARY KEY (`tenant_id`, `id`) ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin"#,
                r#"CREATE UNIQUE INDEX `tm_item_name` ON `tm_item` (`tenant_id`, `name`)"#,
            ],
        ),
    ];
    for (d, expected) in want {
        let got = renderer(d).create_table(&item());
        assert_eq!(got, expected, "dialect {d:?}");
    }
}

#[test]
fn add_column_with_default() {
    let col = ColumnDef::required("status", ColumnType::Text(20)).with_default(Value::from("it's"));
    let want = [
        (
            Dialect::Sqlite,
            r#"ALTER TABLE "tm_item" ADD COLUMN "status" text NOT NULL DEFAULT 'it''s'"#,
        ),
        (
            Dialect::Postgres,
            r#"ALTER TABLE "tm_item" ADD COLUMN "status" varchar(20) COLLATE "C" NOT NULL DEFAULT E'it\'s'"#,
        ),
        (
            Dialect::Mysql,
            r#"ALTER TABLE `tm_item` ADD COLUMN `status` varchar(20) NOT NULL DEFAULT 'it\'s'"#,
        ),
    ];
    for (d, expected) in want {
        check(d, &renderer(d).add_column("tm_item", &col), expected);
    }
}

#[test]
fn insert_is_cached_and_bound() {
    let row = vec![
        Value::Uuid(uuid::Uuid::nil()),
        Value::from("x' OR 1=1--"),
        Value::Null,
        Value::Null,
        Value::Int(1),
    ];
    let want = [
        (
            Dialect::Sqlite,
            r#"INSERT INTO "tm_item" ("tenant_id", "id", "name", "n", "body", "version") VALUES (?, ?, ?, ?, ?, ?)"#,
        ),
        (
            Dialect::Postgres,
            r#"INSERT INTO "tm_item" ("tenant_id", "id", "name", "n", "body", "version") VALUES ($1, $2, $3, $4, $5, $6)"#,
        ),
        (
            Dialect::Mysql,
            r#"INSERT INTO `tm_item` (`tenant_id`, `id`, `name`, `n`, `body`, `version`) VALUES (?, ?, ?, ?, ?, ?)"#,
        ),
    ];
    for (d, expected) in want {
        let r = renderer(d);
        let s = r.insert(tenant(), "tm_item", &row).unwrap();
        check(d, &s.sql, expected);
        assert_eq!(s.binds[2], Bind::Text(Some("x' OR 1=1--".into())));
        assert_eq!(s.binds[3], Bind::Int(None));
        assert_eq!(s.binds[4], Bind::Text(None));
        let again = r.insert(tenant(), "tm_item", &row).unwrap();
        assert!(Arc::ptr_eq(&s.sql, &again.sql));
    }
}

fn select() -> Select {
    Select {
        table: "tm_item",
        cond: Cond::And(vec![
            Cond::Not(Box::new(Cond::Or(vec![
                Cond::Cmp("n".into(), CmpOp::Gt, Value::Int(5)),
                Cond::IsNull("body".into()),
            ]))),
            Cond::Contains("name".into(), "50%_!".into()),
            Cond::In("n".into(), vec![]),
        ]),
        order: vec![
            OrderKey {
                column: "n".into(),
                desc: true,
                null_as: Some(Value::Int(0)),
                custom: None,
            },
            OrderKey {
                column: "name".into(),
                desc: false,
                null_as: None,
                custom: None,
            },
        ],
        after: Some(vec![Value::Int(3), Value::from("b")]),
        limit: Some(10),
        omit: vec![],
    }
}

#[test]
fn select_sql() {
    let want = [
        (
            Dialect::Sqlite,
            r#"SELECT "id", "name", "n", "body", "version" FROM "tm_item" WHERE "tenant_id" = ? AND ((NOT ("n" > ? OR "body" IS NULL)) AND "name" LIKE ? ESCAPE '!' AND (FALSE)) AND (COALESCE("n", ?) < ? OR COALESCE("n", ?) IS NULL OR (COALESCE("n", ?) = ? AND "name" > ?)) ORDER BY COALESCE("n", ?) DESC, "name" ASC, "id" ASC LIMIT ?"#,
        ),
        (
            Dialect::Postgres,
            r#"SELECT "id", "name", "n", "body", "version" FROM "tm_item" WHERE "tenant_id" = $1 AND ((NOT ("n" > $2 OR "body" IS NULL)) AND "name" LIKE $3 ESCAPE '!' AND (FALSE)) AND (COALESCE("n", $4) < $5 OR COALESCE("n", $6) IS NULL OR (COALESCE("n", $7) = $8 AND "name" > $9)) ORDER BY COALESCE("n", $10) DESC, "name" ASC NULLS FIRST, "id" ASC LIMIT $11"#,
        ),
        (
            Dialect::Mysql,
            r#"SELECT `id`, `name`, `n`, `body`, `version` FROM `tm_item` WHERE `tenant_id` = ? AND ((NOT (`n` > ? OR `body` IS NULL)) AND `name` LIKE ? ESCAPE '!' AND (FALSE)) AND (COALESCE(`n`, ?) < ? OR COALESCE(`n`, ?) IS NULL OR (COALESCE(`n`, ?) = ? AND `name` > ?)) ORDER BY COALESCE(`n`, ?) DESC, `name` ASC, `id` ASC LIMIT ?"#,
        ),
    ];
    for (d, expected) in want {
        let f = renderer(d).select(tenant(), &select()).unwrap();
        check(d, &f.stmt.sql, expected);
        assert_eq!(f.stmt.binds[2], Bind::Text(Some("%50!%!_!!%".into())));
    }
}

#[test]
fn custom_cond_and_sort() {
    let field = CustomRef {
        record_kind: "tm_item".into(),
        key: "tier".into(),
    };
    let s = Select {
        table: "tm_item",
        cond: Cond::Custom {
            field: field.clone(),
            cond: Some(Box::new(Cond::Cmp(
                "int_val".into(),
                CmpOp::Gte,
                Value::Int(2),
            ))),
        },
        order: vec![OrderKey {
            column: "text_val".into(),
            desc: false,
            null_as: Some(Value::from("")),
            custom: Some(field),
        }],
        after: None,
        limit: None,
        omit: vec![],
    };
    let f = renderer(Dialect::Postgres).select(tenant(), &s).unwrap();
    check(
        Dialect::Postgres,
        &f.stmt.sql,
        r#"SELECT "id", "name", "n", "body", "version" FROM "tm_item" WHERE "tenant_id" = $1 AND "id" IN (SELECT "record_id" FROM "crm_custom_values" WHERE "tenant_id" = $2 AND "record_kind" = $3 AND "field_key" = $4 AND "int_val" >= $5) ORDER BY COALESCE((SELECT "crm_sort_cv"."text_val" FROM "crm_custom_values" AS "crm_sort_cv" WHERE "crm_sort_cv"."tenant_id" = $6 AND "crm_sort_cv"."record_kind" = $7 AND "crm_sort_cv"."field_key" = $8 AND "crm_sort_cv"."record_id" = "tm_item"."id" AND "crm_sort_cv"."ord" = $9), $10) ASC, "id" ASC"#,
    );
}

#[test]
fn aggregate_update_and_sequence_sql() {
    let agg = Aggregate {
        table: "tm_item",
        cond: Cond::True,
        group_by: vec!["name".into()],
        measures: vec![Measure::Count, Measure::Sum("n".into())],
        buckets: None,
    };
    let want = [
        (
            Dialect::Sqlite,
            r#"SELECT "name", COUNT(*), SUM("n" >> ?), SUM("n" & ?) FROM "tm_item" WHERE "tenant_id" = ? AND (TRUE) GROUP BY "name""#,
        ),
        (
            Dialect::Postgres,
            r#"SELECT "name", COUNT(*), CAST(SUM("n") AS TEXT) FROM "tm_item" WHERE "tenant_id" = $1 AND (TRUE) GROUP BY "name""#,
        ),
        (
            Dialect::Mysql,
            r#"SELECT `name`, COUNT(*), CAST(SUM(`n`) AS CHAR) FROM `tm_item` WHERE `tenant_id` = ? AND (TRUE) GROUP BY `name`"#,
        ),
    ];
    for (d, expected) in want {
        let r = renderer(d);
        check(d, &r.aggregate(tenant(), &agg).unwrap().stmt.sql, expected);
    }
    let r = renderer(Dialect::Postgres);
    let rec = RecordRef::new(RecordKind::new("tm_item"), uuid::Uuid::nil());
    let _ = rec;
    let u = r
        .update(
            tenant(),
            "tm_item",
            &[Value::Uuid(uuid::Uuid::nil())],
            &[("name", Value::from("z"))],
            Some(4),
        )
        .unwrap()
        .unwrap();
    check(
        Dialect::Postgres,
        &u.sql,
        r#"UPDATE "tm_item" SET "name" = $1, "version" = $2 WHERE "tenant_id" = $3 AND "id" = $4 AND "version" = $5"#,
    );
    assert_eq!(u.binds[1], Bind::Int(Some(5)));
    let want = [
        (
            Dialect::Sqlite,
            r#"INSERT INTO "crm_sequences" ("tenant_id", "name", "last_value") VALUES (?, ?, ?) ON CONFLICT ("tenant_id", "name") DO NOTHING"#,
        ),
        (
            Dialect::Postgres,
            r#"INSERT INTO "crm_sequences" ("tenant_id", "name", "last_value") VALUES ($1, $2, $3) ON CONFLICT ("tenant_id", "name") DO NOTHING"#,
        ),
        (
            Dialect::Mysql,
            r#"INSERT INTO `crm_sequences` (`tenant_id`, `name`, `last_value`) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE `name` = `name`"#,
        ),
    ];
    for (d, expected) in want {
        check(
            d,
            &renderer(d).seq_ensure(tenant(), "events").unwrap().sql,
            expected,
        );
    }
    check(
        Dialect::Mysql,
        &renderer(Dialect::Mysql)
            .seq_read(tenant(), "events")
            .unwrap()
            .stmt
            .sql,
        "SELECT `last_value` FROM `crm_sequences` WHERE `tenant_id` = ? AND `name` = ? FOR UPDATE",
    );
}

#[test]
fn unknown_identifiers_are_config_errors() {
    let r = renderer(Dialect::Sqlite);
    let bad = Select::new("tm_item", Cond::eq("name\" OR 1=1 --", "x"));
    assert!(matches!(
        r.select(tenant(), &bad),
        Err(crmkit_core::Error::Config(_))
    ));
    let bad = Select::new("tm_item; DROP TABLE x", Cond::True);
    assert!(matches!(
        r.select(tenant(), &bad),
        Err(crmkit_core::Error::Config(_))
    ));
    let nested = Select::new(
        "tm_item",
        Cond::Custom {
            field: CustomRef {
                record_kind: "a".into(),
                key: "b".into(),
            },
            cond: Some(Box::new(Cond::eq("id", "x"))),
        },
    );
    assert!(matches!(
        r.select(tenant(), &nested),
        Err(crmkit_core::Error::Config(_))
    ));
}

#[test]
fn helpers() {
    assert_eq!(like_escape("a%b_c!d"), "a!%b!_c!!d");
    assert_eq!(
        parse_sum("9007199254740993").unwrap(),
        Value::Int(9007199254740993)
    );
    assert_eq!(parse_sum("-12.0000").unwrap(), Value::Int(-12));
    assert_eq!(
        parse_sum("9223372036854775808").unwrap(),
        Value::Text("9223372036854775808".into())
    );
    assert_eq!(
        parse_sum("-92233720368547758080.0000").unwrap(),
        Value::Text("-92233720368547758080".into())
    );
    assert!(parse_sum("1.5").is_err());
    assert_eq!(
        parse_sum("-9223372036854775808").unwrap(),
        Value::Int(i64::MIN)
    );
}

#[test]
fn lock_calls_bind_their_arguments() {
    let r = renderer(Dialect::Postgres);
    let s = r
        .call("pg_advisory_lock", vec![super::int_arg(42)])
        .unwrap();
    check(Dialect::Postgres, &s.sql, "SELECT pg_advisory_lock($1)");
    assert_eq!(s.binds, vec![Bind::Int(Some(42))]);
    let r = renderer(Dialect::Mysql);
    let s = r
        .call(
            "GET_LOCK",
            vec![super::text_arg("crmkit"), super::int_arg(5)],
        )
        .unwrap();
    check(Dialect::Mysql, &s.sql, "SELECT GET_LOCK(?, ?)");
    let m = r.create_migrations_table();
    check(
        Dialect::Mysql,
        &m,
        "CREATE TABLE IF NOT EXISTS `crm_migrations` ( `module` varchar(64) NOT NULL PRIMARY KEY, `version` bigint NOT NULL, `applied_at` bigint NOT NULL ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin",
    );
}

/// Selects and counts of one shape share their SQL; every value stays bound, in the
/// order of its placeholder (in debug builds a cached statement is also compared with a
/// fresh sea-query rendering, so this exercises that check for many shapes).
#[test]
fn shape_cache_binds_every_value() {
    let field = CustomRef {
        record_kind: "tm_item".into(),
        key: "tier".into(),
    };
    let key = |column: &str, desc: bool, null_as: Option<Value>| OrderKey {
        column: column.into(),
        desc,
        null_as,
        custom: None,
    };
    let shapes = |i: i64| -> Vec<Select> {
        let name = format!("name-{i}");
        vec![
            Select {
                limit: Some(i as u32),
                ..select()
            },
            Select {
                after: Some(vec![Value::Null, Value::from(name.as_str())]),
                ..select()
            },
            Select {
                order: vec![
                    key("n", false, Some(Value::Int(i))),
                    key("name", true, None),
                ],
                after: Some(vec![Value::Int(i + 1), Value::from(name.as_str())]),
                ..select()
            },
            Select {
                table: "tm_item",
                cond: Cond::Or(vec![
                    Cond::StartsWith("name".into(), format!("{i}_%")),
                    Cond::In(
                        "n".into(),
                        vec![Value::Int(i), Value::Null, Value::Int(i + 2)],
                    ),
                    Cond::Cmp("name".into(), CmpOp::Ne, Value::Null),
                    Cond::Custom {
                        field: field.clone(),
                        cond: Some(Box::new(Cond::Cmp(
                            "int_val".into(),
                            CmpOp::Gte,
                            Value::Int(i + 3),
                        ))),
                    },
                    Cond::Custom {
                        field: field.clone(),
                        cond: None,
                    },
                ]),
                order: vec![OrderKey {
                    column: "text_val".into(),
                    desc: true,
                    null_as: Some(Value::from("")),
                    custom: Some(field.clone()),
                }],
                after: Some(vec![
                    Value::from(name.as_str()),
                    Value::Uuid(uuid::Uuid::nil()),
                ]),
                limit: Some(i as u32 + 1),
                omit: vec!["body".into()],
            },
        ]
    };
    for d in [Dialect::Sqlite, Dialect::Postgres, Dialect::Mysql] {
        let r = renderer(d);
        let first: Vec<_> = shapes(1)
            .iter()
            .map(|s| r.select(tenant(), s).unwrap().stmt)
            .collect();
        for (s, before) in shapes(7).iter().zip(&first) {
            let again = r.select(tenant(), s).unwrap().stmt;
            assert!(Arc::ptr_eq(&again.sql, &before.sql), "{d:?}: {}", again.sql);
            assert_eq!(again.binds.len(), before.binds.len());
            assert_ne!(
                again.binds, before.binds,
                "{d:?}: values are bound, not cached"
            );
            let c1 = r.count(tenant(), "tm_item", &s.cond).unwrap().stmt;
            let c2 = r.count(tenant(), "tm_item", &s.cond).unwrap().stmt;
            assert!(Arc::ptr_eq(&c1.sql, &c2.sql));
        }
        // Another shape (a different IN length) is another statement.
        let mut other = shapes(1).remove(3);
        other.cond = Cond::In("n".into(), vec![Value::Int(1)]);
        let s = r.select(tenant(), &other).unwrap().stmt;
        assert!(first.iter().all(|f| !Arc::ptr_eq(&f.sql, &s.sql)));
    }
}
