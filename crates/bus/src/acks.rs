//! Acknowledging many deliveries with one frame.
//!
//! A batch of deliveries settles at once, and a quorum queue turns every acknowledgement it
//! receives into an entry of its log. So acknowledgements are not sent one by one: a small
//! task per channel gathers the tags whose work is done and sends one `basic.ack` with
//! `multiple` for all of them.
//!
//! `multiple` acknowledges every outstanding delivery up to the tag it names, so it may only
//! name a tag below every delivery still being handled (or being retried, released or
//! dead-lettered, which settle one by one): the *watermark*. A tag above it waits for the
//! delivery below to settle, but never longer than [`HOLD`]; then it is acknowledged alone, so
//! one slow message never keeps the others from freeing their prefetch slots.

use lapin::Channel;
use lapin::options::BasicAckOptions;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Longest a finished delivery waits behind an unfinished one for a shared acknowledgement.
pub const HOLD: Duration = Duration::from_millis(20);

/// Acknowledgements of one consuming channel; cloning shares them.
#[derive(Clone)]
pub struct Acks {
    inner: Arc<Inner>,
}

struct Inner {
    channel: Channel,
    state: Mutex<State>,
    wake: Notify,
    /// The task that writes the acknowledgements: the only writer, so two frames never race.
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Default)]
struct State {
    /// Delivered, and not yet acknowledged nor settled otherwise.
    unsettled: BTreeSet<u64>,
    /// Done and to be acknowledged, each with when it was done.
    ready: BTreeMap<u64, Instant>,
    closed: bool,
}

/// What to send now: one acknowledgement with `multiple` up to a tag, and tags alone.
#[derive(Debug, Default, PartialEq, Eq)]
struct Due {
    up_to: Option<u64>,
    alone: Vec<u64>,
}

impl State {
    /// Takes what can be acknowledged at `now`: every ready tag below the watermark with one
    /// frame, and those that have waited [`HOLD`] above it (all of them once `closed`) alone.
    /// Also says when the next held tag falls due.
    fn take(&mut self, now: Instant) -> (Due, Option<Instant>) {
        let watermark = self.unsettled.first().copied().unwrap_or(u64::MAX);
        let mut due = Due::default();
        let below: Vec<u64> = self.ready.range(..watermark).map(|(t, _)| *t).collect();
        for tag in &below {
            self.ready.remove(tag);
        }
        due.up_to = below.last().copied();
        let mut next = None;
        self.ready.retain(|tag, since| {
            if self.closed || now >= *since + HOLD {
                due.alone.push(*tag);
                false
            } else {
                let at = *since + HOLD;
                next = Some(next.map_or(at, |n: Instant| n.min(at)));
                true
            }
        });
        (due, next)
    }
}

impl Acks {
    /// Starts the task that sends the acknowledgements of `channel`.
    pub fn start(channel: Channel) -> Self {
        let acks = Self {
            inner: Arc::new(Inner {
                channel,
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                task: Mutex::new(None),
            }),
        };
        let task = tokio::spawn(acks.clone().send());
        *acks.inner.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        acks
    }

    /// A delivery arrived: until it is settled, no shared acknowledgement passes its tag. Call
    /// it in delivery order, before the delivery is handed on.
    pub fn delivered(&self, tag: u64) {
        self.state().unsettled.insert(tag);
    }

    /// The delivery's work is done: acknowledge it (soon, with others).
    pub fn ack(&self, tag: u64) {
        {
            let mut state = self.state();
            state.unsettled.remove(&tag);
            state.ready.insert(tag, Instant::now());
        }
        self.inner.wake.notify_one();
    }

    /// The delivery was settled on its own (negatively acknowledged, or moved and then
    /// acknowledged): the frame that did so is written, so a shared acknowledgement may pass it.
    pub fn settled(&self, tag: u64) {
        self.state().unsettled.remove(&tag);
        self.inner.wake.notify_one();
    }

    /// Has the task send every acknowledgement still waiting, and waits for it to finish:
    /// the consumer is done.
    pub async fn close(&self) {
        self.state().closed = true;
        self.inner.wake.notify_one();
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn send(self) {
        let mut next: Option<Instant> = None;
        loop {
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = self.inner.wake.notified() => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => self.inner.wake.notified().await,
            }
            // Deliveries of one batch settle together: let the rest of it land first.
            tokio::time::sleep(Duration::from_millis(1)).await;
            let (due, closed) = {
                let mut state = self.state();
                let (due, at) = state.take(Instant::now());
                next = at;
                (due, state.closed)
            };
            self.write(due).await;
            if closed {
                return;
            }
        }
    }

    async fn write(&self, due: Due) {
        let channel = &self.inner.channel;
        let multiple = BasicAckOptions { multiple: true };
        let frames = due
            .up_to
            .map(|tag| (tag, multiple))
            .into_iter()
            .chain(due.alone.iter().map(|t| (*t, BasicAckOptions::default())));
        for (tag, options) in frames {
            let sent = tokio::time::timeout(
                crate::consumer::SETTLE_WRITE,
                channel.basic_ack(tag, options),
            );
            match sent.await {
                Ok(Ok(())) => {}
                // The channel broke: the broker requeues what was not acknowledged by itself.
                Ok(Err(err)) => tracing::warn!(error = %err, "could not acknowledge deliveries"),
                Err(_) => {
                    tracing::warn!("acknowledging deliveries timed out; the broker requeues them")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(unsettled: &[u64], ready: &[u64], at: Instant) -> State {
        State {
            unsettled: unsettled.iter().copied().collect(),
            ready: ready.iter().map(|t| (*t, at)).collect(),
            closed: false,
        }
    }

    #[test]
    fn one_frame_covers_what_is_done_below_the_first_unfinished_delivery() {
        let now = Instant::now();
        let mut s = state(&[4, 9], &[1, 2, 3, 5, 6], now);
        let (due, next) = s.take(now);
        assert_eq!(
            due,
            Due {
                up_to: Some(3),
                alone: vec![]
            }
        );
        // 5 and 6 wait for 4, but not past the hold.
        assert_eq!(next, Some(now + HOLD));
        assert_eq!(s.ready.len(), 2);
        s.unsettled.remove(&4);
        let (due, next) = s.take(now);
        assert_eq!(
            due,
            Due {
                up_to: Some(6),
                alone: vec![]
            }
        );
        assert_eq!(next, None);
    }

    #[test]
    fn a_slow_delivery_does_not_hold_the_others_past_the_hold() {
        let then = Instant::now();
        let mut s = state(&[1], &[2, 3], then);
        let (due, _) = s.take(then + HOLD);
        assert_eq!(
            due,
            Due {
                up_to: None,
                alone: vec![2, 3]
            }
        );
        assert!(s.ready.is_empty());
        assert!(
            s.unsettled.contains(&1),
            "the unfinished one is never acknowledged"
        );
    }

    #[test]
    fn nothing_unfinished_is_ever_covered() {
        let now = Instant::now();
        let mut s = state(&[2], &[1, 3], now);
        let (due, _) = s.take(now);
        assert_eq!(due.up_to, Some(1));
        assert!(due.alone.is_empty());
        // Closing sends what is ready alone, never a frame that passes an unfinished tag.
        s.closed = true;
        let (due, _) = s.take(now);
        assert_eq!(
            due,
            Due {
                up_to: None,
                alone: vec![3]
            }
        );
    }
}
