//! `--rate`: at most so many moves per second, spaced evenly.
//!
//! Each move waits until one interval (a second divided by the rate) has passed since the one
//! before it started. A move that is late (the broker was slow) does not let the next ones
//! bunch up to catch up: the spacing holds between any two moves, so no second ever sees more
//! than the rate.

use std::num::NonZeroU32;
use std::time::Duration;
use tokio::time::Instant;

/// Spaces moves at most `rate` a second.
#[derive(Debug, Clone)]
pub struct Pacer {
    interval: Duration,
    /// When the next move may start; `None` before the first.
    next: Option<Instant>,
}

impl Pacer {
    pub fn per_second(rate: NonZeroU32) -> Self {
        Self {
            interval: Duration::from_secs(1) / rate.get(),
            next: None,
        }
    }

    /// How long the next move must wait from `now`.
    pub fn delay(&self, now: Instant) -> Duration {
        self.next
            .map_or(Duration::ZERO, |next| next.saturating_duration_since(now))
    }

    /// Records a move starting at `now`, which must be no earlier than [`Pacer::delay`] allows.
    pub fn moved(&mut self, now: Instant) {
        self.next = Some(now + self.interval);
    }

    /// Waits until the next move may start, and records it as started.
    pub async fn wait(&mut self) {
        let delay = self.delay(Instant::now());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.moved(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn moves_at_a_rate_are_spaced_by_its_interval_and_the_first_goes_at_once() {
        let mut pacer = Pacer::per_second(rate(4));
        let start = Instant::now();
        pacer.wait().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        for _ in 1..9 {
            pacer.wait().await;
        }
        // Nine moves at four a second: eight intervals of 250 ms.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_move_does_not_let_the_next_ones_bunch_up() {
        let mut pacer = Pacer::per_second(rate(10));
        pacer.wait().await;
        // The broker held the pass up for a second.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let late = Instant::now();
        pacer.wait().await;
        assert_eq!(late.elapsed(), Duration::ZERO, "a late move goes at once");
        pacer.wait().await;
        pacer.wait().await;
        assert_eq!(
            late.elapsed(),
            Duration::from_millis(200),
            "and the ones after it keep their spacing"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_second_sees_more_moves_than_the_rate() {
        let mut pacer = Pacer::per_second(rate(5));
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..20 {
            pacer.wait().await;
            at.push(start.elapsed());
        }
        for (i, first) in at.iter().enumerate() {
            let within = at[i..]
                .iter()
                .take_while(|t| **t < *first + Duration::from_secs(1))
                .count();
            assert!(within <= 5, "{within} moves within a second of {first:?}");
        }
    }
}
