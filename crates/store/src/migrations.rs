//! The schema migrations: applied one process at a time, and reported.
//!
//! Every replica of every service may run `beckon migrate` as it starts (an init container):
//! an advisory lock on the database makes them take turns, and the ones that come later find
//! nothing pending.

use crate::StoreError;
use crate::connect::open;
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel_async::{AsyncMigrationHarness, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// The schema migrations, compiled into every binary that runs them.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The advisory lock key migrating processes take turns on ("beckon-m" as a number).
const LOCK: i64 = 0x6265_636b_6f6e_2d6d;

/// Where a database stands against the migrations compiled into this binary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// Versions applied, oldest first.
    pub applied: Vec<String>,
    /// Versions this binary has that the database has not, oldest first.
    pub pending: Vec<String>,
    /// Versions the database has that this binary does not know (a newer version migrated it).
    pub unknown: Vec<String>,
}

#[derive(diesel::QueryableByName)]
struct Taken {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    taken: bool,
}

/// Who holds the migration lock, as PostgreSQL knows them.
#[derive(diesel::QueryableByName)]
struct Holder {
    #[diesel(sql_type = diesel::sql_types::Text)]
    holder: String,
}

/// Applies every pending migration, waiting while another process applies them; returns the
/// versions it applied. Needs the multi-threaded tokio runtime.
pub async fn migrate(url: &str) -> Result<Vec<String>, StoreError> {
    migrate_reporting(url, |_| {}).await
}

/// [`migrate`], telling `waiting` every 10 s who holds the lock while it waits (a process
/// that died holding it keeps it until its server session ends; one behind a pooler in
/// transaction mode, until the pooler closes that session).
pub async fn migrate_reporting(
    url: &str,
    mut waiting: impl FnMut(&str),
) -> Result<Vec<String>, StoreError> {
    let mut conn = open(url).await?;
    let mut polls = 0u32;
    // Held by this session until it ends with the connection (also when this process dies).
    // Polled, not waited for in `pg_advisory_lock`: a session blocked in a statement holds a
    // snapshot, which the holder's `CREATE INDEX CONCURRENTLY` would wait for in turn.
    loop {
        let Taken { taken } =
            diesel::sql_query(format!("SELECT pg_try_advisory_lock({LOCK}) AS taken"))
                .get_result(&mut conn)
                .await?;
        if taken {
            break;
        }
        if polls.is_multiple_of(20) {
            let holders: Vec<Holder> = diesel::sql_query(format!(
                "SELECT format('backend %s (%s, from %s, %s since %s)', a.pid, \
                   coalesce(nullif(a.application_name, ''), 'no name'), \
                   coalesce(a.client_addr::text, 'a local socket'), a.state, \
                   date_trunc('second', a.backend_start)) AS holder \
                 FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
                 WHERE l.locktype = 'advisory' AND l.granted \
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                   AND (l.classid::bigint << 32 | l.objid::bigint) = {LOCK}"
            ))
            .load(&mut conn)
            .await?;
            // (`first` here would be diesel's.)
            let who =
                <[Holder]>::first(&holders).map_or("a session that just ended", |h| &h.holder);
            waiting(who);
        }
        polls += 1;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let mut harness = AsyncMigrationHarness::new(conn);
    let applied = harness
        .run_pending_migrations(MIGRATIONS)
        .map_err(|e| StoreError::Migrate(e.to_string()))?;
    Ok(applied.iter().map(ToString::to_string).collect())
}

/// What is applied and what is pending. Needs the multi-threaded tokio runtime.
pub async fn status(url: &str) -> Result<Status, StoreError> {
    let conn = open(url).await?;
    let mut harness = AsyncMigrationHarness::new(conn);
    let known: Vec<String> = MigrationSource::<Pg>::migrations(&MIGRATIONS)
        .map_err(|e| StoreError::Migrate(e.to_string()))?
        .iter()
        .map(|m| m.name().version().to_string())
        .collect();
    let mut applied: Vec<String> = harness
        .applied_migrations()
        .map_err(|e| StoreError::Migrate(e.to_string()))?
        .iter()
        .map(ToString::to_string)
        .collect();
    applied.sort();
    let pending = known
        .iter()
        .filter(|v| !applied.contains(v))
        .cloned()
        .collect();
    let unknown = applied
        .iter()
        .filter(|v| !known.contains(v))
        .cloned()
        .collect();
    Ok(Status {
        applied,
        pending,
        unknown,
    })
}
