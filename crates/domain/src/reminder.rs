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

/// A user's reminder for one survey, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Existing {
    pub id: uuid::Uuid,
    /// Still waiting to fire.
    pub scheduled: bool,
    pub cancelled: bool,
    pub scheduled_for: Option<OffsetDateTime>,
    /// The trial end it was computed from.
    pub reminder_for: Option<OffsetDateTime>,
}

/// What to do so a user's reminder for one survey matches their trial end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// As it should be (or nothing to do).
    Keep,
    /// Cancel this waiting reminder.
    Cancel(uuid::Uuid),
    /// Move this waiting reminder.
    Move {
        id: uuid::Uuid,
        at: OffsetDateTime,
        reminder_for: OffsetDateTime,
    },
    /// Schedule a reminder.
    Create {
        at: OffsetDateTime,
        reminder_for: OffsetDateTime,
    },
}

/// What makes a user's reminder for one survey right, seen at `now`: `lead_seconds` is the
/// survey's lead when it is Live and listens for `trial_ending_soon`, `None` when it does
/// not (its waiting reminders are cancelled). A reminder for this very trial end that already
/// fired is not made again: the user had it. Applying the plan and planning again keeps.
pub fn plan(
    trial_ends_at: Option<OffsetDateTime>,
    lead_seconds: Option<i64>,
    existing: &[Existing],
    now: OffsetDateTime,
) -> Plan {
    let pending = existing.iter().find(|e| e.scheduled);
    let wanted = lead_seconds.and_then(|lead| Some((fire_time(trial_ends_at, lead, now)?, lead)));
    match (wanted, pending, trial_ends_at) {
        (None, Some(pending), _) => Plan::Cancel(pending.id),
        (None, None, _) | (Some(_), _, None) => Plan::Keep,
        (Some((at, lead)), Some(pending), Some(ends)) => {
            // Due already and still due: firing now or a moment ago is the same.
            let due = pending.scheduled_for.is_some_and(|t| t <= now)
                && ends - Duration::seconds(lead) <= now;
            let same = pending.scheduled_for == Some(at) || due;
            if same && pending.reminder_for == Some(ends) {
                Plan::Keep
            } else {
                Plan::Move {
                    id: pending.id,
                    at,
                    reminder_for: ends,
                }
            }
        }
        (Some((at, _)), None, Some(ends)) => {
            let had = existing
                .iter()
                .any(|e| e.reminder_for == Some(ends) && !e.cancelled);
            if had {
                Plan::Keep
            } else {
                Plan::Create {
                    at,
                    reminder_for: ends,
                }
            }
        }
    }
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

    #[test]
    fn a_plan_sets_moves_and_clears_a_reminder_and_then_keeps_it() {
        let ends = datetime!(2026-12-10 12:00 UTC);
        let id = uuid::Uuid::now_v7();
        let pending = |at, reminder_for| Existing {
            id,
            scheduled: true,
            cancelled: false,
            scheduled_for: Some(at),
            reminder_for: Some(reminder_for),
        };
        let at = datetime!(2026-12-07 12:00 UTC);
        assert_eq!(
            plan(Some(ends), Some(3 * DAY), &[], NOW),
            Plan::Create {
                at,
                reminder_for: ends
            }
        );
        assert_eq!(
            plan(Some(ends), Some(3 * DAY), &[pending(at, ends)], NOW),
            Plan::Keep
        );
        assert_eq!(
            plan(Some(ends), Some(DAY), &[pending(at, ends)], NOW),
            Plan::Move {
                id,
                at: datetime!(2026-12-09 12:00 UTC),
                reminder_for: ends
            }
        );
        // The survey stopped listening, or the trial end is gone: cleared.
        assert_eq!(
            plan(Some(ends), None, &[pending(at, ends)], NOW),
            Plan::Cancel(id)
        );
        assert_eq!(
            plan(None, Some(3 * DAY), &[pending(at, ends)], NOW),
            Plan::Cancel(id)
        );
        // Fired already for this trial end: not again.
        let fired = Existing {
            scheduled: false,
            ..pending(at, ends)
        };
        assert_eq!(plan(Some(ends), Some(3 * DAY), &[fired], NOW), Plan::Keep);
        // Due, and still due: kept rather than moved to each new now.
        let soon = datetime!(2026-11-24 12:00 UTC);
        let due = pending(datetime!(2026-11-23 11:00 UTC), soon);
        assert_eq!(plan(Some(soon), Some(3 * DAY), &[due], NOW), Plan::Keep);
    }
}
