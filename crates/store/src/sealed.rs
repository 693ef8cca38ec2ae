//! The columns that hold values sealed under the deployment's keys, and the batched rewrite
//! `beckon keys reseal` runs over them after a key rotation.
//!
//! The store does no cryptography: the caller says what a value under the newest key begins
//! with (its header) and how to reseal one; the store finds the rows whose value does not
//! begin so and writes the new values back. Each batch is one transaction that locks its rows
//! with `FOR UPDATE SKIP LOCKED`, so the services keep running: a row one of them holds is
//! passed over (and counted as left) rather than waited for, and a row is never written from a
//! value read before another transaction changed it.

use crate::StoreError;
use diesel::sql_types::{Array, BigInt, Bytea, Uuid as SqlUuid};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

/// A column of sealed values, in a table keyed by `id uuid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedColumn {
    pub table: &'static str,
    pub column: &'static str,
}

impl std::fmt::Display for SealedColumn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.table, self.column)
    }
}

/// Every column that holds sealed values.
pub const SEALED_COLUMNS: &[SealedColumn] = &[
    SealedColumn {
        table: "webhook_subscriptions",
        column: "secret_encrypted",
    },
    SealedColumn {
        table: "webhook_subscriptions",
        column: "previous_secret_encrypted",
    },
    SealedColumn {
        table: "webhook_messages",
        column: "body_encrypted",
    },
    SealedColumn {
        table: "invitations",
        column: "token_sealed",
    },
    SealedColumn {
        table: "projects",
        column: "widget_secret_sealed",
    },
    SealedColumn {
        table: "projects",
        column: "widget_previous_secret_sealed",
    },
];

/// Whether a batch writes what it reseals or only reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Lock the rows, reseal, write back.
    Rewrite,
    /// Read without locking and write nothing.
    DryRun,
}

/// What one batch came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Batch {
    /// The last row the batch looked at, where the next one starts; `None` when there were no
    /// rows left to look at.
    pub last: Option<Uuid>,
    /// Values resealed (or, in a dry run, that would be).
    pub resealed: usize,
    /// Values no configured key opens.
    pub unreadable: usize,
}

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Bytea)]
    sealed: Vec<u8>,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The condition a row needs resealing under: its value does not begin with `$1`.
fn stale(column: &SealedColumn) -> String {
    format!(
        "{c} IS NOT NULL AND substring({c} from 1 for length($1)) <> $1",
        c = column.column
    )
}

/// Reseals up to `limit` values of `column` whose value does not begin with `header`, in
/// rows with ids after `after` (`Uuid::nil()` to start), in id order, with `reseal` (`None`
/// for a value it cannot open). Rows other transactions hold locked are passed over.
pub async fn reseal_batch(
    conn: &mut AsyncPgConnection,
    column: SealedColumn,
    header: &[u8],
    after: Uuid,
    limit: i64,
    mode: Mode,
    reseal: &(dyn Fn(&[u8]) -> Option<Vec<u8>> + Sync),
) -> Result<Batch, StoreError> {
    let lock = match mode {
        Mode::Rewrite => "FOR UPDATE SKIP LOCKED",
        Mode::DryRun => "",
    };
    let select = format!(
        "SELECT id, {c} AS sealed FROM {t} WHERE id > $2 AND {stale} ORDER BY id LIMIT $3 {lock}",
        c = column.column,
        t = column.table,
        stale = stale(&column),
    );
    let update = format!(
        "UPDATE {t} SET {c} = v.sealed FROM unnest($1::uuid[], $2::bytea[]) AS v(id, sealed) \
         WHERE {t}.id = v.id",
        c = column.column,
        t = column.table,
    );
    conn.transaction::<_, StoreError, _>(async |conn| {
        let rows: Vec<Row> = diesel::sql_query(&select)
            .bind::<Bytea, _>(header)
            .bind::<SqlUuid, _>(after)
            .bind::<BigInt, _>(limit)
            .load(conn)
            .await?;
        let mut batch = Batch {
            last: rows.last().map(|r| r.id),
            ..Batch::default()
        };
        let (mut ids, mut values) = (Vec::new(), Vec::new());
        for row in rows {
            match reseal(&row.sealed) {
                Some(value) => {
                    ids.push(row.id);
                    values.push(value);
                }
                None => batch.unreadable += 1,
            }
        }
        batch.resealed = ids.len();
        if mode == Mode::Rewrite && !ids.is_empty() {
            diesel::sql_query(&update)
                .bind::<Array<SqlUuid>, _>(&ids)
                .bind::<Array<Bytea>, _>(&values)
                .execute(conn)
                .await?;
        }
        Ok(batch)
    })
    .await
}

/// How many values of `column` do not begin with `header`.
pub async fn count_stale(
    conn: &mut AsyncPgConnection,
    column: SealedColumn,
    header: &[u8],
) -> Result<i64, StoreError> {
    let count: Count = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM {t} WHERE {stale}",
        t = column.table,
        stale = stale(&column),
    ))
    .bind::<Bytea, _>(header)
    .get_result(conn)
    .await?;
    Ok(count.n)
}

/// How many values of `column` already begin with `header` (were sealed under its key).
pub async fn count_current(
    conn: &mut AsyncPgConnection,
    column: SealedColumn,
    header: &[u8],
) -> Result<i64, StoreError> {
    let count: Count = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM {t} WHERE {c} IS NOT NULL \
           AND substring({c} from 1 for length($1)) = $1",
        t = column.table,
        c = column.column,
    ))
    .bind::<Bytea, _>(header)
    .get_result(conn)
    .await?;
    Ok(count.n)
}
