//! When a `trial_ending_soon` reminder fires.

use time::{Duration, OffsetDateTime};

/// The fire time of a reminder `lead_seconds` ahead of `trial_ends_at`, seen at `now`:
/// - no trial end, or a trial already over: no reminder;
/// - a reminder time already past while the trial still runs: fire now;
/// - otherwise the trial end minus the lead.
pub fn fire_time(
    trial_ends_at: Option<OffsetDateTime>,
    lead_seconds: i64,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    let ends = trial_ends_at?;
    if ends <= now {
        return None;
    }
    Some((ends - Duration::seconds(lead_seconds)).max(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-23 12:00 UTC);
    const DAY: i64 = 24 * 3600;

    #[test]
    fn a_reminder_fires_the_lead_time_before_the_trial_ends() {
        assert_eq!(
            fire_time(Some(datetime!(2026-12-10 12:00 UTC)), 3 * DAY, NOW),
            Some(datetime!(2026-12-07 12:00 UTC))
        );
    }

    #[test]
    fn a_reminder_whose_time_has_passed_fires_now_while_the_trial_runs() {
        assert_eq!(
            fire_time(Some(datetime!(2026-11-24 12:00 UTC)), 3 * DAY, NOW),
            Some(NOW)
        );
    }

    #[test]
    fn no_trial_end_or_a_trial_already_over_schedules_nothing() {
        assert_eq!(fire_time(None, 3 * DAY, NOW), None);
        assert_eq!(fire_time(Some(NOW), 3 * DAY, NOW), None);
        assert_eq!(
            fire_time(Some(datetime!(2026-11-01 0:00 UTC)), 0, NOW),
            None
        );
    }
}
