//! Keyset paging, the one way every list is read: newest first, ordered by a key that is
//! unique per row, so a page starts exactly after the last row of the one before however many
//! rows share a timestamp (a batch's deliveries all do). One row more than the page is read to
//! learn whether more follow, so no count is ever needed.

use diesel::expression::{
    AppearsOnTable, Expression, SelectableExpression, ValidGrouping, is_aggregate,
};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Bool, Timestamptz, Uuid as SqlUuid};
use time::OffsetDateTime;
use uuid::Uuid;

/// The position of a row in a list ordered by `created_at DESC, id DESC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyset {
    pub created_at: OffsetDateTime,
    pub id: Uuid,
}

/// A row of a list ordered by `created_at DESC, id DESC`: where it stands in it. The key a
/// cursor resumes from is the row's own, so it can never disagree with the list's order.
pub trait Keyed {
    fn keyset(&self) -> Keyset;
}

impl Keyed for Keyset {
    fn keyset(&self) -> Keyset {
        *self
    }
}

/// Implements [`Keyed`] for rows with `created_at` and `id` fields.
macro_rules! keyed_by_created_at_and_id {
    ($($row:ty),* $(,)?) => {$(
        impl $crate::paging::Keyed for $row {
            fn keyset(&self) -> $crate::paging::Keyset {
                $crate::paging::Keyset {
                    created_at: self.created_at,
                    id: self.id,
                }
            }
        }
    )*};
}
pub(crate) use keyed_by_created_at_and_id;

/// One page wanted: at most `limit` rows (at least 1), those after `after` in the list's order,
/// or its first rows when `after` is `None`. `K` is the list's key: a [`Keyset`], or the
/// serial id of a table whose ids grow with time (the attempt log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest<K> {
    pub after: Option<K>,
    pub limit: i64,
}

impl<K> PageRequest<K> {
    /// The first `limit` rows.
    pub fn first(limit: i64) -> Self {
        Self { after: None, limit }
    }

    /// How many rows to read: one past the page, which is never returned but tells whether
    /// more follow.
    pub fn fetch(&self) -> i64 {
        self.limit.max(1) + 1
    }

    /// The page made of `rows`, read with [`PageRequest::fetch`] as their limit.
    pub fn page<T>(&self, mut rows: Vec<T>) -> Page<T> {
        let limit = usize::try_from(self.limit.max(1)).unwrap_or(usize::MAX);
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        Page {
            items: rows,
            has_more,
        }
    }
}

/// A page of rows, in the list's order, and whether more follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}

impl<T> Page<T> {
    /// The position to ask for the next page after, when there is one.
    pub fn next_after<K>(&self, key: impl Fn(&T) -> K) -> Option<K> {
        self.has_more.then(|| self.items.last().map(key)).flatten()
    }

    /// The row to ask for the next page after, in a keyset list, when there is one.
    pub fn next_keyset(&self) -> Option<Keyset>
    where
        T: Keyed,
    {
        self.next_after(T::keyset)
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            has_more: self.has_more,
        }
    }
}

/// `(created_at, id) < (after.created_at, after.id)`: the rows after `after` in newest-first
/// order. A row-value comparison, not `created_at < t OR (created_at = t AND id < i)`:
/// PostgreSQL answers it from an index on `(…, created_at, id)` as one range, starting where
/// the previous page ended instead of filtering everything newer.
pub fn older_than<C, I>(created_at: C, id: I, after: Keyset) -> OlderThan<C, I> {
    OlderThan {
        created_at,
        id,
        after,
    }
}

/// See [`older_than`].
#[derive(Debug, Clone, Copy)]
pub struct OlderThan<C, I> {
    created_at: C,
    id: I,
    after: Keyset,
}

impl<C, I> Expression for OlderThan<C, I>
where
    C: Expression<SqlType = Timestamptz>,
    I: Expression<SqlType = SqlUuid>,
{
    type SqlType = Bool;
}

impl<C, I> QueryFragment<Pg> for OlderThan<C, I>
where
    C: QueryFragment<Pg>,
    I: QueryFragment<Pg>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        out.push_sql("(");
        self.created_at.walk_ast(out.reborrow())?;
        out.push_sql(", ");
        self.id.walk_ast(out.reborrow())?;
        out.push_sql(") < (");
        out.push_bind_param::<Timestamptz, _>(&self.after.created_at)?;
        out.push_sql(", ");
        out.push_bind_param::<SqlUuid, _>(&self.after.id)?;
        out.push_sql(")");
        Ok(())
    }
}

impl<C: QueryId, I: QueryId> QueryId for OlderThan<C, I> {
    type QueryId = OlderThan<C::QueryId, I::QueryId>;
    // The key is a bind parameter: the statement's shape is the same for every page.
    const HAS_STATIC_QUERY_ID: bool = C::HAS_STATIC_QUERY_ID && I::HAS_STATIC_QUERY_ID;
}

impl<QS, C, I> AppearsOnTable<QS> for OlderThan<C, I>
where
    C: AppearsOnTable<QS, SqlType = Timestamptz>,
    I: AppearsOnTable<QS, SqlType = SqlUuid>,
{
}

impl<QS, C, I> SelectableExpression<QS> for OlderThan<C, I>
where
    C: SelectableExpression<QS, SqlType = Timestamptz>,
    I: SelectableExpression<QS, SqlType = SqlUuid>,
{
}

impl<GB, C, I> ValidGrouping<GB> for OlderThan<C, I> {
    // Compares plain columns: never an aggregate.
    type IsAggregate = is_aggregate::No;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::webhook_deliveries;
    use diesel::prelude::*;

    #[test]
    fn a_page_reads_one_row_past_its_limit_to_learn_whether_more_follow() {
        let request = PageRequest::<i64>::first(2);
        assert_eq!(request.fetch(), 3);
        let full = request.page(vec![30, 20, 10]);
        assert_eq!(full.items, [30, 20]);
        assert!(full.has_more);
        assert_eq!(full.next_after(|n| *n), Some(20));
        let last = request.page(vec![30, 20]);
        assert!(!last.has_more);
        assert_eq!(last.next_after(|n| *n), None);
    }

    #[test]
    fn the_keyset_condition_compares_rows() {
        let after = Keyset {
            created_at: OffsetDateTime::UNIX_EPOCH,
            id: Uuid::nil(),
        };
        let query = webhook_deliveries::table
            .filter(older_than(
                webhook_deliveries::created_at,
                webhook_deliveries::id,
                after,
            ))
            .select(webhook_deliveries::id);
        let sql = diesel::debug_query::<Pg, _>(&query).to_string();
        assert!(
            sql.contains(
                "(\"webhook_deliveries\".\"created_at\", \"webhook_deliveries\".\"id\") < ($1, $2)"
            ),
            "{sql}"
        );
    }
}
