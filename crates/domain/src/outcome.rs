//! What became of each survey an event matched, and the counts a dispatch answers with.

use serde::{Deserialize, Serialize};

/// The outcome of one matched survey for one trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SurveyOutcome {
    /// An invitation was created.
    Created,
    /// The survey's cooldown for this user was still open (checked before the sample roll).
    Cooldown,
    /// The sample roll missed; no invitation, no cooldown started.
    Sample,
    /// Creating the invitation failed; the reason is recorded.
    Errored,
    /// The survey's conditions were false for the event and the user; the reason is the
    /// JSON pointer of the clause that was false (`/all/1/eq`).
    ConditionFalse,
    /// The project's cap on invitations per user across its surveys was reached.
    Capped,
    /// Not matched: the survey is not Live (a draft or paused). Not counted as matched.
    NotLive,
    /// Not matched: the survey is Live but does not listen for the event. Not counted as
    /// matched.
    NotSubscribed,
}

impl SurveyOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Cooldown => "cooldown",
            Self::Sample => "sample",
            Self::Errored => "errored",
            Self::ConditionFalse => "condition_false",
            Self::Capped => "capped",
            Self::NotLive => "not_live",
            Self::NotSubscribed => "not_subscribed",
        }
    }

    /// Whether the event matched the survey (it was Live and listened for the event).
    pub fn matched(self) -> bool {
        !matches!(self, Self::NotLive | Self::NotSubscribed)
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [
            Self::Created,
            Self::Cooldown,
            Self::Sample,
            Self::Errored,
            Self::ConditionFalse,
            Self::Capped,
            Self::NotLive,
            Self::NotSubscribed,
        ]
        .into_iter()
        .find(|o| o.as_str() == raw)
    }
}

/// The counts of a dispatch, as the response names them.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DispatchCounts {
    pub matched_surveys: u32,
    pub created_count: u32,
    pub suppressed_by_cooldown_count: u32,
    pub suppressed_by_sample_count: u32,
    pub errored_count: u32,
    /// Matched surveys whose conditions were false.
    // `default`: replies queued before the field existed still read.
    #[serde(default)]
    pub suppressed_by_condition_count: u32,
    /// Matched surveys left out by the project's cap on invitations per user.
    #[serde(default)]
    pub suppressed_by_cap_count: u32,
}

impl DispatchCounts {
    /// The counts of these outcomes; a survey the event did not match counts in none.
    pub fn from_outcomes(outcomes: impl IntoIterator<Item = SurveyOutcome>) -> Self {
        outcomes.into_iter().fold(Self::default(), |mut c, o| {
            if !o.matched() {
                return c;
            }
            c.matched_surveys += 1;
            match o {
                SurveyOutcome::Created => c.created_count += 1,
                SurveyOutcome::Cooldown => c.suppressed_by_cooldown_count += 1,
                SurveyOutcome::Sample => c.suppressed_by_sample_count += 1,
                SurveyOutcome::Errored => c.errored_count += 1,
                SurveyOutcome::ConditionFalse => c.suppressed_by_condition_count += 1,
                SurveyOutcome::Capped => c.suppressed_by_cap_count += 1,
                SurveyOutcome::NotLive | SurveyOutcome::NotSubscribed => {}
            }
            c
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_to_the_matched_surveys() {
        use SurveyOutcome::*;
        let c = DispatchCounts::from_outcomes([
            Created,
            Created,
            Cooldown,
            Sample,
            Errored,
            ConditionFalse,
            Capped,
            NotLive,
            NotSubscribed,
        ]);
        assert_eq!(
            c,
            DispatchCounts {
                matched_surveys: 7,
                created_count: 2,
                suppressed_by_cooldown_count: 1,
                suppressed_by_sample_count: 1,
                errored_count: 1,
                suppressed_by_condition_count: 1,
                suppressed_by_cap_count: 1,
            }
        );
    }
}
