//! Resealing after a key rotation, against a real, freshly migrated database.

use beckon_store::sealed::{self, Mode, SEALED_COLUMNS, SealedColumn};
use beckon_store::testing::WithProject;
use diesel::sql_types::{Bytea, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::BTreeSet;
use uuid::Uuid;

/// Byte columns that `beckon keys reseal` leaves alone, and why.
const NOT_RESEALED: &[(&str, &str)] = &[
    // SHA-256 of a token: looked up, never opened.
    ("api_tokens", "token_hash"),
    ("invitations", "token_hash"),
    ("idempotency_keys", "request_hash"),
    // An envelope on its way to the bus.
    ("outbox", "body"),
    // A replayed answer: sealed, but kept 24 hours, so it outlives no rotation that keeps the
    // old key a day (the rotation steps say so).
    ("idempotency_keys", "response_body"),
];

#[derive(diesel::QueryableByName)]
struct ByteColumn {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_byte_column_is_either_resealed_or_known_to_hold_nothing_sealed() {
    let seeded = WithProject::new(2).await;
    let mut conn = seeded.store.conn().await.unwrap();
    let columns: Vec<ByteColumn> = diesel::sql_query(
        "SELECT table_name::text AS table_name, column_name::text AS column_name \
         FROM information_schema.columns \
         WHERE table_schema = 'public' AND data_type = 'bytea'",
    )
    .load(&mut conn)
    .await
    .unwrap();
    let found: BTreeSet<(String, String)> = columns
        .into_iter()
        .map(|c| (c.table_name, c.column_name))
        .collect();
    let known: BTreeSet<(String, String)> = SEALED_COLUMNS
        .iter()
        .map(|c| (c.table, c.column))
        .chain(NOT_RESEALED.iter().copied())
        .map(|(t, c)| (t.to_owned(), c.to_owned()))
        .collect();
    assert_eq!(
        found, known,
        "a byte column is new: add it to SEALED_COLUMNS if it holds sealed values"
    );
}

const MESSAGES: SealedColumn = SealedColumn {
    table: "webhook_messages",
    column: "body_encrypted",
};

/// The stand-in for the keys: a value under the newest key begins with `NEW:`; `bad` opens
/// under none.
const HEADER: &[u8] = b"NEW:";

fn reseal(value: &[u8]) -> Option<Vec<u8>> {
    (value != b"bad").then(|| [HEADER, value].concat())
}

async fn insert_message(seeded: &WithProject, conn: &mut AsyncPgConnection, body: &[u8]) -> Uuid {
    let id = Uuid::now_v7();
    diesel::sql_query(
        "INSERT INTO webhook_messages (id, org_id, project_id, event_type, version, body_encrypted, occurred_at) \
         VALUES ($1, $2, $3, 'invitation.created', 1, $4, now())",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<SqlUuid, _>(seeded.org_id)
    .bind::<SqlUuid, _>(seeded.project_id)
    .bind::<Bytea, _>(body)
    .execute(conn)
    .await
    .unwrap();
    id
}

#[derive(diesel::QueryableByName)]
struct Body {
    #[diesel(sql_type = Bytea)]
    body_encrypted: Vec<u8>,
}

async fn body(conn: &mut AsyncPgConnection, id: Uuid) -> Vec<u8> {
    let row: Body = diesel::sql_query("SELECT body_encrypted FROM webhook_messages WHERE id = $1")
        .bind::<SqlUuid, _>(id)
        .get_result(conn)
        .await
        .unwrap();
    row.body_encrypted
}

/// Runs batches of `size` over the messages until none is left to look at: (resealed,
/// unreadable).
async fn run(conn: &mut AsyncPgConnection, size: i64, mode: Mode) -> (usize, usize) {
    let (mut resealed, mut unreadable, mut after) = (0, 0, Uuid::nil());
    loop {
        let batch = sealed::reseal_batch(conn, MESSAGES, HEADER, after, size, mode, &reseal)
            .await
            .unwrap();
        resealed += batch.resealed;
        unreadable += batch.unreadable;
        match batch.last {
            Some(last) => after = last,
            None => return (resealed, unreadable),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_reseal_stale_values_pass_over_locked_rows_and_leave_the_rest_for_another_run() {
    let seeded = WithProject::new(4).await;
    let mut conn = seeded.store.conn().await.unwrap();
    let mut old = Vec::new();
    for i in 0..5u8 {
        old.push(insert_message(&seeded, &mut conn, &[b'o', i]).await);
    }
    let current = insert_message(&seeded, &mut conn, b"NEW:already").await;
    let bad = insert_message(&seeded, &mut conn, b"bad").await;

    // A dry run counts and changes nothing.
    assert_eq!(run(&mut conn, 2, Mode::DryRun).await, (5, 1));
    assert_eq!(body(&mut conn, old[0]).await, [b'o', 0]);
    assert_eq!(
        sealed::count_stale(&mut conn, MESSAGES, HEADER)
            .await
            .unwrap(),
        6
    );

    // A service holds one row while the rewrite runs.
    let mut holder = seeded.store.conn().await.unwrap();
    diesel::sql_query("BEGIN")
        .execute(&mut holder)
        .await
        .unwrap();
    diesel::sql_query("SELECT 1 FROM webhook_messages WHERE id = $1 FOR UPDATE")
        .bind::<SqlUuid, _>(old[2])
        .execute(&mut holder)
        .await
        .unwrap();
    assert_eq!(run(&mut conn, 2, Mode::Rewrite).await, (4, 1));
    assert_eq!(body(&mut conn, old[0]).await, b"NEW:o\0");
    assert_eq!(body(&mut conn, old[2]).await, [b'o', 2]);
    assert_eq!(body(&mut conn, current).await, b"NEW:already");
    assert_eq!(body(&mut conn, bad).await, b"bad");
    assert_eq!(
        sealed::count_stale(&mut conn, MESSAGES, HEADER)
            .await
            .unwrap(),
        2
    );

    diesel::sql_query("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    assert_eq!(run(&mut conn, 2, Mode::Rewrite).await, (1, 1));
    assert_eq!(
        body(&mut conn, old[2]).await,
        [b"NEW:".as_slice(), &[b'o', 2]].concat()
    );
    assert_eq!(
        sealed::count_stale(&mut conn, MESSAGES, HEADER)
            .await
            .unwrap(),
        1
    );
    // Nothing is resealed twice.
    assert_eq!(run(&mut conn, 2, Mode::Rewrite).await, (0, 1));
}
