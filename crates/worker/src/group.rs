//! Taking work in groups: the first item waiting and whatever else is already queued.

use tokio::sync::{Mutex, mpsc};

/// A queue several workers take groups from.
pub type Shared<T> = std::sync::Arc<Mutex<mpsc::UnboundedReceiver<T>>>;

/// Waits for the first item, then takes up to `max - 1` more that are already queued, never
/// waiting for them: a lone item is a group of one at once, a backlog goes in large groups.
/// `None` once every sender is gone.
pub async fn take<T>(queue: &Shared<T>, max: usize) -> Option<Vec<T>> {
    let mut rx = queue.lock().await;
    let first = rx.recv().await?;
    let mut group = vec![first];
    // Only what is queued already: no timer, not even one that has run out, since the timer
    // wheel fires on its next tick (up to a millisecond later), and every stage of the
    // pipeline would pay that on every message.
    while group.len() < max.max(1) {
        match rx.try_recv() {
            Ok(next) => group.push(next),
            Err(_) => break,
        }
    }
    Some(group)
}

/// Like [`take`], but after the first item waits up to `window` for more: for work that no
/// caller waits on closely, where fewer, larger groups are worth a short delay.
pub async fn take_within<T>(
    queue: &Shared<T>,
    max: usize,
    window: std::time::Duration,
) -> Option<Vec<T>> {
    let mut rx = queue.lock().await;
    let first = rx.recv().await?;
    let mut group = vec![first];
    let deadline = tokio::time::Instant::now() + window;
    while group.len() < max.max(1) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(next)) => group.push(next),
            Ok(None) | Err(_) => break,
        }
    }
    Some(group)
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
        assert_eq!(take(&rx, 3).await, Some(vec![0, 1, 2]));
        assert_eq!(take(&rx, 3).await, Some(vec![3, 4]));
        tx.send(5).unwrap();
        assert_eq!(take(&rx, 3).await, Some(vec![5]));
        drop(tx);
        assert_eq!(take(&rx, 3).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_item_is_taken_without_waiting_for_a_timer_tick() {
        let (tx, rx) = queue();
        // Between two ticks of the timer wheel, as any real moment is.
        tokio::time::advance(std::time::Duration::from_micros(500)).await;
        let start = tokio::time::Instant::now();
        tx.send(1).unwrap();
        assert_eq!(take(&rx, 8).await, Some(vec![1]));
        // The paused clock moves only to wake a timer: it did not move, so none was waited on.
        assert_eq!(tokio::time::Instant::now(), start);
    }

    #[tokio::test]
    async fn within_a_window_waits_for_more_until_the_maximum_or_the_window_ends() {
        let (tx, rx) = queue();
        tx.send(0).unwrap();
        let late = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            late.send(1).unwrap();
        });
        // Waits for the late second item (the window is long), and stops at the maximum.
        let long = std::time::Duration::from_secs(30);
        assert_eq!(take_within(&rx, 2, long).await, Some(vec![0, 1]));
        // With nothing more coming, the window ends the group.
        tx.send(2).unwrap();
        let short = std::time::Duration::from_millis(20);
        assert_eq!(take_within(&rx, 10, short).await, Some(vec![2]));
        drop(tx);
        assert_eq!(take_within(&rx, 10, short).await, None);
    }
}
