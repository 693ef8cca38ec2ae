//! Prepared once per connection: statements diesel would otherwise send unprepared.
//!
//! Diesel prepares and caches a statement only when its SQL can never vary with its values.
//! It never caches an `UPDATE` (a changeset may skip `None` fields), a multi-row insert, an
//! upsert or `sql_query`, so PostgreSQL parses and plans those on every execution — on the hot
//! path that was a fifth of the database's CPU. [`Cached`] marks such a statement safe to cache;
//! the cache is keyed by the SQL text and the bind types, so a statement whose SQL does vary
//! (a changeset with optional fields, a batch of another size) is only a different cache
//! entry, never a wrong one. Use it only where the SQL takes a handful of shapes, since every
//! shape stays prepared on every pooled connection.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;

/// `query`, prepared once per connection and reused.
#[derive(Debug, Clone, Copy)]
pub struct Cached<Q>(pub Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Cached<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

// Keyed by its SQL text, not by its type: one type may print several statements.
impl<Q> QueryId for Cached<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Cached<Q> {
    type SqlType = Q::SqlType;
}
