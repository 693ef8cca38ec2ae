//! A fresh database per test, cloned from a migrated template.
//!
//! The template is named after a hash of the migrations, built once under an advisory lock
//! (test processes run in parallel) and renamed into place only when fully migrated.
//! `CREATE DATABASE … TEMPLATE` then takes tens of milliseconds. Each test database is
//! dropped when its handle is.

use crate::StoreError;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The server to create test databases on, as an URL to one of its databases.
pub fn admin_url() -> String {
    std::env::var("BECKON_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `url` naming `database` instead, its parameters kept.
fn with_database(url: &str, database: &str) -> String {
    let (url, query) = match url.split_once('?') {
        Some((url, query)) => (url, format!("?{query}")),
        None => (url, String::new()),
    };
    match url.rfind('/') {
        Some(i) => format!("{}/{database}{query}", &url[..i]),
        None => format!("{url}/{database}{query}"),
    }
}

/// A hash of every migration's SQL, read from the source tree.
fn migrations_hash() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    let mut hash = Sha256::new();
    for entry in entries {
        hash.update(entry.file_name().unwrap_or_default().as_encoded_bytes());
        for file in ["up.sql", "down.sql"] {
            hash.update(std::fs::read(entry.join(file)).unwrap_or_default());
        }
    }
    hash.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(diesel::QueryableByName)]
struct Exists {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn database_exists(conn: &mut AsyncPgConnection, name: &str) -> Result<bool, StoreError> {
    let row: Exists = diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
        .bind::<Text, _>(name)
        .get_result(conn)
        .await?;
    Ok(row.n > 0)
}

async fn ensure_template(admin: &str) -> Result<String, StoreError> {
    let name = format!("beckon_template_{}", migrations_hash());
    let mut conn = crate::connect::open(admin).await?;
    diesel::sql_query("SELECT pg_advisory_lock(727274)")
        .execute(&mut conn)
        .await?;
    let result = async {
        if !database_exists(&mut conn, &name).await? {
            let building = format!("{name}_building");
            diesel::sql_query(format!("DROP DATABASE IF EXISTS {building}"))
                .execute(&mut conn)
                .await?;
            diesel::sql_query(format!("CREATE DATABASE {building}"))
                .execute(&mut conn)
                .await?;
            crate::migrate(&with_database(admin, &building)).await?;
            diesel::sql_query(format!("ALTER DATABASE {building} RENAME TO {name}"))
                .execute(&mut conn)
                .await?;
        }
        Ok::<_, StoreError>(())
    }
    .await;
    diesel::sql_query("SELECT pg_advisory_unlock(727274)")
        .execute(&mut conn)
        .await?;
    result.map(|()| name)
}

/// A migrated database of its own, dropped with the handle.
pub struct TestDatabase {
    name: String,
    url: String,
    admin: String,
}

impl TestDatabase {
    pub async fn new() -> Result<Self, StoreError> {
        Self::on(&admin_url()).await
    }

    /// A migrated database of its own on the server of `admin` (an URL to one of its
    /// databases, TLS parameters and all).
    pub async fn on(admin: &str) -> Result<Self, StoreError> {
        let template = ensure_template(admin).await?;
        Self::create(admin, &format!("TEMPLATE {template}")).await
    }

    /// An empty database of its own: no table, no migration applied.
    pub async fn empty() -> Result<Self, StoreError> {
        Self::create(&admin_url(), "").await
    }

    async fn create(admin: &str, options: &str) -> Result<Self, StoreError> {
        let admin = admin.to_owned();
        let name = format!("beckon_test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = crate::connect::open(&admin).await?;
        diesel::sql_query(format!("CREATE DATABASE {name} {options}"))
            .execute(&mut conn)
            .await?;
        Ok(Self {
            url: with_database(&admin, &name),
            name,
            admin,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A survey of `project_id` named "Churn" with one NPS question, in `status`, listening for
/// `events` without conditions: no cooldown, every trigger sampled, links valid for ten
/// minutes, reminders an hour ahead. Tests change what they need with `..`.
pub fn survey(
    org_id: uuid::Uuid,
    project_id: uuid::Uuid,
    status: beckon_domain::survey::SurveyStatus,
    events: Vec<beckon_domain::LifecycleEvent>,
) -> crate::surveys::NewSurvey {
    use beckon_domain::survey::{Question, QuestionKind, SurveyTrigger};
    crate::surveys::NewSurvey {
        org_id,
        project_id,
        name: "Churn".into(),
        status,
        questions: vec![Question {
            id: "q1".into(),
            title: "How likely?".into(),
            required: true,
            tags: Vec::new(),
            kind: QuestionKind::Nps,
        }],
        trigger: SurveyTrigger {
            events,
            conditions: None,
        },
        cooldown_seconds: 0,
        sample_rate: 1.0,
        sample_by: Default::default(),
        invitation_lifetime_seconds: 600,
        trial_reminder_lead_seconds: 3600,
    }
}

/// A fresh database holding one organization ("Acme") with one project ("Web"), and a store
/// on it: where most tests that need real rows start.
pub struct WithProject {
    pub db: TestDatabase,
    pub store: crate::Store,
    pub org_id: uuid::Uuid,
    pub project_id: uuid::Uuid,
}

impl WithProject {
    /// Panics when the database cannot be had: only for tests.
    pub async fn new(pool_size: usize) -> Self {
        let db = TestDatabase::new().await.expect("test database");
        let store = crate::Store::new(db.url(), pool_size).expect("a store");
        let mut conn = store.conn().await.expect("a connection");
        let org = crate::tenancy::create_organization(&mut conn, "Acme")
            .await
            .expect("an organization");
        let project = crate::tenancy::create_project(&mut conn, org.id, "Web")
            .await
            .expect("a project");
        drop(conn);
        Self {
            db,
            store,
            org_id: org.id,
            project_id: project.id,
        }
    }

    /// A survey of the project: see [`survey`].
    pub fn survey(
        &self,
        status: beckon_domain::survey::SurveyStatus,
        events: Vec<beckon_domain::LifecycleEvent>,
    ) -> crate::surveys::NewSurvey {
        survey(self.org_id, self.project_id, status, events)
    }

    /// An active webhook subscription of the project (ordered or not) to a URL nothing
    /// listens on, with the default retry policy.
    pub async fn subscription(&self, ordered: bool) -> crate::webhooks::Subscription {
        let mut conn = self.store.conn().await.expect("a connection");
        let created = crate::webhooks::create_subscription(
            &mut conn,
            &crate::webhooks::NewSubscription {
                id: uuid::Uuid::now_v7(),
                org_id: self.org_id,
                project_id: self.project_id,
                url: "http://127.0.0.1:9/hook".into(),
                description: String::new(),
                event_types: Vec::new(),
                status: crate::webhooks::status::ACTIVE.into(),
                retry_policy: serde_json::json!({"kind": "exponential"}),
                timeout_ms: 1000,
                payload_version: 1,
                secret_encrypted: vec![1],
                verified_at: None,
                rate_limit: None,
                ordered,
                format: beckon_domain::webhook_format::PayloadFormat::Beckon,
            },
            20,
        )
        .await
        .expect("a subscription");
        match created {
            crate::webhooks::SubscriptionCreated::Created(sub) => *sub,
            _ => panic!("a project's first subscriptions are created"),
        }
    }

    /// A message about "user" that occurred at `occurred_at`, with its delivery to `sub`
    /// (skipped when `active` is false; sent in order when `ordered`), due now; returns its id.
    pub async fn message(
        &self,
        sub: uuid::Uuid,
        ordered: bool,
        active: bool,
        occurred_at: time::OffsetDateTime,
    ) -> uuid::Uuid {
        let mut conn = self.store.conn().await.expect("a connection");
        let id = uuid::Uuid::now_v7();
        crate::webhooks::insert_message(
            &mut conn,
            &crate::webhooks::NewMessage {
                id,
                org_id: self.org_id,
                project_id: self.project_id,
                event_type: "invitation.created".into(),
                version: 1,
                body_encrypted: b"sealed".to_vec(),
                occurred_at,
                user_ref: Some("user".into()),
            },
        )
        .await
        .expect("a message");
        let subscriber = [crate::webhooks::Subscriber {
            id: sub,
            active,
            ordered,
            format: beckon_domain::webhook_format::PayloadFormat::Beckon,
            payload_version: 1,
        }];
        crate::webhooks::insert_deliveries_of(
            &conn,
            &[(id, &subscriber)],
            time::OffsetDateTime::now_utc(),
        )
        .await
        .expect("its delivery");
        id
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop may run inside a runtime, which cannot block on itself: use a thread of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = crate::connect::open(&admin).await.ok()?;
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}
