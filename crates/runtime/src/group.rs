//! Taking work in groups: the first item waiting and whatever else is already queued.

use futures_util::future::BoxFuture;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, mpsc};

/// A queue several workers take groups from.
pub type Shared<T> = Arc<Mutex<mpsc::UnboundedReceiver<T>>>;

/// Waits for the first item, then takes up to `max - 1` more: those queued within `window`
/// after it (with a zero window, only those already queued, at once), for work that no caller
/// waits on closely, where fewer, larger groups are worth a short delay. `None` once every
/// sender is gone.
pub async fn take_within<T>(queue: &Shared<T>, max: usize, window: Duration) -> Option<Vec<T>> {
    let mut rx = queue.lock().await;
    let first = rx.recv().await?;
    Some(gather(&mut rx, first, max, window).await)
}

/// `first` and what follows it within `window`, up to `max` items. A zero window takes only
/// what is queued already, without a timer: tokio fires even a timer that has run out on its
/// wheel's next tick, up to a millisecond later, and every stage would pay that per message.
async fn gather<T>(
    rx: &mut mpsc::UnboundedReceiver<T>,
    first: T,
    max: usize,
    window: Duration,
) -> Vec<T> {
    let mut group = vec![first];
    let max = max.max(1);
    if window.is_zero() {
        while group.len() < max {
            match rx.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        return group;
    }
    let deadline = tokio::time::Instant::now() + window;
    while group.len() < max {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(next)) => group.push(next),
            Ok(None) | Err(_) => break,
        }
    }
    group
}

/// Groups for workers that commit each group together: a group starts at once while no other
/// is being worked on, so a lone item never waits; while another is, it lingers up to
/// `linger` for more to join it, since the items arriving meanwhile would otherwise each take
/// a commit of their own. Cloning shares the queue.
pub struct Groups<T> {
    queue: Shared<T>,
    max: usize,
    linger: Duration,
    working: Arc<AtomicUsize>,
}

impl<T> Clone for Groups<T> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            max: self.max,
            linger: self.linger,
            working: self.working.clone(),
        }
    }
}

/// Held while a group is worked on; dropping it (also when the worker panics) says it is done.
pub struct Working(Arc<AtomicUsize>);

impl Drop for Working {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A sender and the groups workers take, at most `max` items each.
pub fn groups<T>(max: usize, linger: Duration) -> (mpsc::UnboundedSender<T>, Groups<T>) {
    let (tx, queue) = queue();
    let groups = Groups {
        queue,
        max,
        linger,
        working: Arc::new(AtomicUsize::new(0)),
    };
    (tx, groups)
}

impl<T> Groups<T> {
    /// The next group, and the token that marks it as worked on until dropped. `None` once
    /// every sender is gone.
    pub async fn next(&self) -> Option<(Vec<T>, Working)> {
        let mut rx = self.queue.lock().await;
        let first = rx.recv().await?;
        let others = self.working.fetch_add(1, Ordering::AcqRel);
        let working = Working(self.working.clone());
        let window = if others > 0 {
            self.linger
        } else {
            Duration::ZERO
        };
        Some((gather(&mut rx, first, self.max, window).await, working))
    }
}

/// What committing a group came to.
#[derive(Debug)]
pub enum Committed<O, E> {
    /// The group committed whole: each item's outcome, in order (one per item, an item the
    /// commit answered nothing for getting the default).
    Together(Vec<O>),
    /// The group failed for a reason each item would meet alone too (`each_alone` said no: the
    /// database is away), or it was a group of one.
    Failed(E),
    /// The group failed and each item was committed on its own: each one's outcome, in order.
    Alone(Vec<Result<O, E>>),
}

/// Commits `items` together with `commit`, which answers one outcome per item it is given.
/// Should that fail and `each_alone` say the failure may be one item's doing (bad data, a
/// deadlock between groups; not an outage, which every item would meet alone too), each item
/// is committed again on its own with the same function, `at_once` at a time, so one bad item
/// fails only itself and the rest commit. The one way every place that gathers work commits it.
pub async fn commit<'a, T, O: Default, E>(
    items: &'a [T],
    at_once: usize,
    commit: impl Fn(&'a [T]) -> BoxFuture<'a, Result<Vec<O>, E>>,
    each_alone: impl FnOnce(&E) -> BoxFuture<'a, bool>,
) -> Committed<O, E> {
    use futures_util::StreamExt;
    match commit(items).await {
        Ok(mut outcomes) => {
            outcomes.resize_with(items.len(), O::default);
            Committed::Together(outcomes)
        }
        Err(err) if items.len() > 1 && each_alone(&err).await => {
            let alone: Vec<_> = items
                .iter()
                .map(|item| commit(std::slice::from_ref(item)))
                .collect();
            let outcomes: Vec<Result<Vec<O>, E>> = futures_util::stream::iter(alone)
                .buffered(at_once.max(1))
                .collect()
                .await;
            Committed::Alone(
                outcomes
                    .into_iter()
                    .map(|outcome| outcome.map(|mut o| o.pop().unwrap_or_default()))
                    .collect(),
            )
        }
        Err(err) => Committed::Failed(err),
    }
}

/// [`commit`] for work whose every failed group is tried item by item: each item's outcome,
/// one per item, in order.
pub async fn commit_each<'a, T, O: Default, E: std::error::Error>(
    items: &'a [T],
    at_once: usize,
    commit_fn: impl Fn(&'a [T]) -> BoxFuture<'a, Result<Vec<O>, E>>,
) -> Vec<Result<O, E>> {
    let each_alone = |err: &E| -> BoxFuture<'a, bool> {
        let (size, error) = (items.len(), crate::error_chain(err));
        tracing::info!(size, %error, "a group failed; committing each of its items on its own");
        Box::pin(async { true })
    };
    match commit(items, at_once, commit_fn, each_alone).await {
        Committed::Together(outcomes) => outcomes.into_iter().map(Ok).collect(),
        // Only a group of one fails whole here.
        Committed::Failed(err) => vec![Err(err)],
        Committed::Alone(outcomes) => outcomes,
    }
}

/// A sender and the shared end for workers.
pub fn queue<T>() -> (mpsc::UnboundedSender<T>, Shared<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (tx, std::sync::Arc::new(Mutex::new(rx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn takes_what_is_queued_up_to_the_maximum_without_waiting() {
        let (tx, rx) = queue();
        for i in 0..5 {
            tx.send(i).unwrap();
        }
        assert_eq!(
            take_within(&rx, 3, Duration::ZERO).await,
            Some(vec![0, 1, 2])
        );
        assert_eq!(take_within(&rx, 3, Duration::ZERO).await, Some(vec![3, 4]));
        tx.send(5).unwrap();
        assert_eq!(take_within(&rx, 3, Duration::ZERO).await, Some(vec![5]));
        drop(tx);
        assert_eq!(take_within(&rx, 3, Duration::ZERO).await, None);
    }

    /// Between two ticks of the timer wheel, as any real moment is.
    async fn between_ticks() {
        tokio::time::advance(Duration::from_micros(500)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_item_is_taken_without_waiting_for_a_timer_tick() {
        let (tx, rx) = queue();
        between_ticks().await;
        let start = tokio::time::Instant::now();
        tx.send(1).unwrap();
        assert_eq!(take_within(&rx, 8, Duration::ZERO).await, Some(vec![1]));
        // The paused clock moves only to wake a timer: it did not move, so none was waited on.
        assert_eq!(tokio::time::Instant::now(), start);
    }

    #[tokio::test(start_paused = true)]
    async fn a_group_starts_at_once_while_no_other_is_worked_on() {
        let (tx, groups) = groups(8, Duration::from_millis(5));
        between_ticks().await;
        let start = tokio::time::Instant::now();
        tx.send(1).unwrap();
        let (first, working) = groups.next().await.unwrap();
        assert_eq!(first, vec![1]);
        assert_eq!(tokio::time::Instant::now(), start);
        // Once that group is done, the next lone item starts at once too.
        drop(working);
        tx.send(2).unwrap();
        let (second, _working) = groups.next().await.unwrap();
        assert_eq!(second, vec![2]);
        assert_eq!(tokio::time::Instant::now(), start);
    }

    #[tokio::test(start_paused = true)]
    async fn while_another_group_is_worked_on_a_group_lingers_for_more() {
        let (tx, groups) = groups(3, Duration::from_millis(5));
        tx.send(0).unwrap();
        let (_, _busy) = groups.next().await.unwrap();
        tx.send(1).unwrap();
        let late = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            late.send(2).unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
            late.send(3).unwrap();
            late.send(4).unwrap();
        });
        // Joined by what arrives within the linger, up to the maximum.
        let (group, _working) = groups.next().await.unwrap();
        assert_eq!(group, vec![1, 2, 3]);
        let (rest, _working) = groups.next().await.unwrap();
        assert_eq!(rest, vec![4]);
    }

    #[tokio::test]
    async fn a_worker_that_panics_still_marks_its_group_done() {
        let (tx, groups) = groups::<u8>(8, Duration::from_secs(30));
        tx.send(1).unwrap();
        let taken = groups.clone();
        let worker = tokio::spawn(async move {
            let (_group, _working) = taken.next().await.unwrap();
            panic!("the handler failed");
        });
        assert!(worker.await.is_err());
        // Not lingering 30 s behind a group nobody works on.
        tx.send(2).unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), groups.next()).await;
        assert_eq!(next.unwrap().unwrap().0, vec![2]);
    }

    #[derive(Debug, PartialEq, Eq, thiserror::Error)]
    #[error("{0} is odd")]
    struct Odd(u8);

    /// Commits every item but the odd ones; a group with an odd item fails whole.
    fn evens(items: &[u8]) -> BoxFuture<'_, Result<Vec<u8>, Odd>> {
        Box::pin(async move {
            match items.iter().find(|i| *i % 2 == 1) {
                Some(odd) => Err(Odd(*odd)),
                None => Ok(items.iter().map(|i| i * 10).collect()),
            }
        })
    }

    #[tokio::test]
    async fn a_group_commits_whole_or_each_item_alone() {
        let yes = |_: &Odd| -> BoxFuture<'static, bool> { Box::pin(async { true }) };
        let whole = commit(&[2, 4], 4, evens, yes).await;
        assert!(matches!(whole, Committed::Together(ref o) if *o == vec![20, 40]));
        // One bad item fails only itself.
        let split = commit(&[2, 3, 4], 4, evens, yes).await;
        let Committed::Alone(outcomes) = split else {
            panic!("{split:?}")
        };
        assert_eq!(outcomes, vec![Ok(20), Err(Odd(3)), Ok(40)]);
        // A failure every item would meet alone (an outage) is not tried item by item.
        let away = commit(&[2, 3, 4], 4, evens, |_| Box::pin(async { false })).await;
        assert!(matches!(away, Committed::Failed(Odd(3))));
        // Nor is a group of one.
        let one = commit(&[3], 4, evens, yes).await;
        assert!(matches!(one, Committed::Failed(_)));
    }

    #[tokio::test]
    async fn committing_each_answers_one_outcome_per_item() {
        assert_eq!(commit_each(&[2, 4], 1, evens).await, vec![Ok(20), Ok(40)]);
        assert_eq!(
            commit_each(&[2, 3], 1, evens).await,
            vec![Ok(20), Err(Odd(3))]
        );
        assert_eq!(commit_each(&[3], 1, evens).await, vec![Err(Odd(3))]);
        // A commit that answers for fewer items than it was given still answers each.
        fn short(items: &[u8]) -> BoxFuture<'_, Result<Vec<u8>, Odd>> {
            Box::pin(async move { Ok(items.iter().take(1).copied().collect()) })
        }
        assert_eq!(commit_each(&[7, 8], 1, short).await, vec![Ok(7), Ok(0)]);
    }

    #[tokio::test]
    async fn within_a_window_waits_for_more_until_the_maximum_or_the_window_ends() {
        let (tx, rx) = queue();
        tx.send(0).unwrap();
        let late = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            late.send(1).unwrap();
        });
        // Waits for the late second item (the window is long), and stops at the maximum.
        let long = Duration::from_secs(30);
        assert_eq!(take_within(&rx, 2, long).await, Some(vec![0, 1]));
        // With nothing more coming, the window ends the group.
        tx.send(2).unwrap();
        let short = Duration::from_millis(20);
        assert_eq!(take_within(&rx, 10, short).await, Some(vec![2]));
        drop(tx);
        assert_eq!(take_within(&rx, 10, short).await, None);
    }
}
