//! Pauses between tries of something that failed for a reason that may pass.
//!
//! Every retry loop in Beckon waits the same way: from a first pause, doubling, capped, and
//! jittered so that many clients that failed together (every consumer when the database
//! fails over, every connection when the broker restarts) do not come back together.

use backon::{BackoffBuilder, ExponentialBuilder};
use std::time::Duration;

/// Growing, jittered pauses: the `n`th is between `first · 2ⁿ` and twice that, never more
/// than `max` (plus its jitter). Endless.
pub fn pauses(first: Duration, max: Duration) -> impl Iterator<Item = Duration> + Send {
    ExponentialBuilder::new()
        .with_min_delay(first)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// The pause before retry number `n` (0 for the first) of a sequence of [`pauses`].
pub fn nth(first: Duration, max: Duration, n: u32) -> Duration {
    pauses(first, max).nth(n.min(64) as usize).unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_from_the_first_and_stay_under_twice_the_cap() {
        let first = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        let seen: Vec<_> = pauses(first, max).take(12).collect();
        for (n, pause) in seen.iter().enumerate() {
            let base = (first * 2u32.pow(n as u32)).min(max);
            // f32 arithmetic inside the crate: allow a millisecond either way.
            let slack = Duration::from_millis(1);
            assert!(
                *pause + slack >= base && *pause <= base * 2 + slack,
                "pause {n} was {pause:?}"
            );
        }
        assert!(nth(first, max, 1000) <= max * 2);
    }

    #[test]
    fn pauses_are_jittered() {
        let first = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        let a: Vec<_> = pauses(first, max).take(8).collect();
        let b: Vec<_> = pauses(first, max).take(8).collect();
        let c: Vec<_> = pauses(first, max).take(8).collect();
        assert!(a != b || b != c, "three sequences were identical: {a:?}");
    }
}
