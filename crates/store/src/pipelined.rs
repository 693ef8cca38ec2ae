//! Statements that can share a round trip.
//!
//! A repository function whose future borrows the connection shared (`&AsyncPgConnection`)
//! can be awaited together with others (`try_join`); the connection then sends them one after
//! another without waiting for each answer, and PostgreSQL runs them in that order. Such a
//! function builds its statement when called, or none when there is nothing to do; these turn
//! that into its result.

use crate::StoreError;
use diesel::QueryResult;
use std::future::Future;

/// The rows a statement returns; none when there was nothing to send.
pub async fn rows<T>(
    sent: Option<impl Future<Output = QueryResult<Vec<T>>>>,
) -> Result<Vec<T>, StoreError> {
    match sent {
        Some(sent) => Ok(sent.await?),
        None => Ok(Vec::new()),
    }
}

/// Waits for a statement whose count is not needed; done at once when there was nothing to
/// send.
pub async fn done(
    sent: Option<impl Future<Output = QueryResult<usize>>>,
) -> Result<(), StoreError> {
    if let Some(sent) = sent {
        sent.await?;
    }
    Ok(())
}
