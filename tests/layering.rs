//! The layering of ARCHITECTURE.md, checked by reading the Cargo.toml files:
//! core <- domain modules <- sql <- facade; the testkit sits beside the facade.
//! crmkit-core knows nothing about SQL; domain modules know nothing about SQL.

use std::collections::BTreeMap;
use std::path::Path;

/// Names of the normal (non-dev) dependencies of a manifest.
fn dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut out = vec![];
    let mut in_deps = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.']).next().unwrap().trim();
            out.push(name.to_owned());
        }
    }
    out
}

#[test]
fn crates_follow_the_layering() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("crmkit-core", &[][..]),
        ("crmkit-contacts", &["crmkit-core"][..]),
        ("crmkit-pipeline", &["crmkit-core", "crmkit-contacts"][..]),
        (
            "crmkit-activities",
            &["crmkit-core", "crmkit-contacts", "crmkit-pipeline"][..],
        ),
        (
            "crmkit-tickets",
            &[
                "crmkit-core",
                "crmkit-contacts",
                "crmkit-pipeline",
                "crmkit-activities",
            ][..],
        ),
        // Automation needs only the kernel: rules are checked against the composed kinds
        // through the generic record API.
        ("crmkit-automation", &["crmkit-core"][..]),
        // Analytics reports on deals, pipelines and exchange rates; with its optional
        // features `activities` and `tickets` on activities, follow-up and tickets too.
        (
            "crmkit-analytics",
            &[
                "crmkit-core",
                "crmkit-pipeline",
                "crmkit-contacts",
                "crmkit-activities",
                "crmkit-tickets",
            ][..],
        ),
        ("crmkit-sql", &["crmkit-core"][..]),
        (
            "crmkit-testkit",
            &[
                "crmkit-core",
                "crmkit-contacts",
                "crmkit-pipeline",
                "crmkit-activities",
                "crmkit-tickets",
                "crmkit-automation",
                "crmkit-analytics",
                "crmkit-sql",
            ][..],
        ),
    ]);
    let sql_stack = ["sea-query", "rusqlite", "sqlx"];
    let mut seen = 0;
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let deps = dependencies(&dir.join("Cargo.toml"));
        let ok = allowed
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name} is missing from the layering table"));
        for d in deps.iter().filter(|d| d.starts_with("crmkit")) {
            assert!(ok.contains(&d.as_str()), "{name} must not depend on {d}");
        }
        if name != "crmkit-sql" && name != "crmkit-testkit" {
            for d in &deps {
                assert!(
                    !sql_stack.contains(&d.as_str()),
                    "{name} must not know SQL, but depends on {d}"
                );
            }
        }
        seen += 1;
    }
    assert_eq!(seen, allowed.len(), "every crate is in the layering table");
}
