//! Rules every migration keeps, read from the migration files themselves.

use std::path::Path;

/// Tables that hold a row per event or more: an index added to one of them later must be built
/// `CONCURRENTLY` (alone in a migration run outside a transaction), or every write to the table
/// waits while it scans the whole table during a deploy.
const BIG: [&str; 5] = [
    "webhook_deliveries",
    "webhook_messages",
    "webhook_attempts",
    "triggers",
    "responses",
];

/// The first day's schema, written as the tables were created.
const GRANDFATHERED: [&str; 2] = [
    "2026-11-23-000002_events_and_schedules",
    "2026-11-23-000006_erasure",
];

#[test]
fn indexes_added_to_big_tables_are_built_concurrently() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut plain = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let migration = entry.unwrap().path();
        let name = migration
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if GRANDFATHERED.contains(&name.as_str()) {
            continue;
        }
        let Ok(sql) = std::fs::read_to_string(migration.join("up.sql")) else {
            continue;
        };
        let code: String = sql
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase();
        for statement in code.split(';') {
            let words: Vec<&str> = statement.split_whitespace().collect();
            if !statement.contains("create index") && !statement.contains("create unique index") {
                continue;
            }
            if words.contains(&"concurrently") {
                continue;
            }
            let table = words
                .iter()
                .position(|w| *w == "on")
                .and_then(|i| words.get(i + 1))
                .map(|t| t.split('(').next().unwrap_or(t));
            // An index made with its table is built on an empty table.
            if let Some(table) = table.filter(|t| BIG.contains(t))
                && !code.contains(&format!("create table {table}"))
            {
                plain.push(format!("{name}: {}", statement.trim()));
            }
        }
    }
    assert!(plain.is_empty(), "{plain:#?}");
}

/// Every replica's init container runs `beckon migrate` at once: they take turns, the first
/// applies everything, the others find nothing pending, and none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_take_turns() {
    let db = beckon_store::testing::TestDatabase::empty()
        .await
        .expect("an empty database");
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url().to_owned();
            tokio::spawn(async move { beckon_store::migrate(&url).await })
        })
        .collect();
    let mut applied = Vec::new();
    for run in runs {
        applied.push(run.await.unwrap().expect("every run succeeds").len());
    }
    let status = beckon_store::migrations::status(db.url()).await.unwrap();
    assert!(
        status.pending.is_empty() && status.unknown.is_empty(),
        "{status:?}"
    );
    applied.sort_unstable();
    assert_eq!(
        applied,
        [0, 0, 0, status.applied.len()],
        "one run applied them all"
    );
}

/// A process waiting for the lock says every 10 s who holds it, so an init container stuck
/// behind a dead holder (or a pooled session that kept the lock) shows why in its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_migration_names_who_holds_the_lock() {
    use diesel_async::RunQueryDsl;
    let db = beckon_store::testing::TestDatabase::empty()
        .await
        .expect("an empty database");
    let mut holder = beckon_store::connect::open(&format!("{}?application_name=holder", db.url()))
        .await
        .unwrap();
    diesel::sql_query("SELECT pg_advisory_lock(7090182501446856045)")
        .execute(&mut holder)
        .await
        .unwrap();
    let mut said = Vec::new();
    let waited = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        beckon_store::migrate_reporting(db.url(), |who| said.push(who.to_owned())),
    )
    .await;
    assert!(waited.is_err(), "it waits while the lock is held");
    assert!(
        <[String]>::first(&said).is_some_and(|s| s.contains("holder")),
        "names the holder at once: {said:?}"
    );
}
