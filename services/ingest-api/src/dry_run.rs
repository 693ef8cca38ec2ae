//! A dry run: what an event would do for a user, survey by survey and with the reason, as the
//! rules apply now — without writing anything, claiming a cooldown or a place under the cap,
//! or sending anything. `dry_run: true` on `lifecycle/dispatch` and `events/send`.
//!
//! Every survey of the project but the archived ones is listed: those the event matches with
//! what the rules decide (in the order the services apply them, `beckon_domain::targeting`),
//! and the others as `not_live` or `not_subscribed`. A survey sampled per event rolls as a new
//! event would, so at a rate between 0 and 1 each dry run may answer either way; one sampled
//! per user answers what that user always gets.

use beckon_domain::condition::Subject;
use beckon_domain::outcome::{DispatchCounts, SurveyOutcome};
use beckon_domain::targeting::{self, Allowance, Targeting, Verdict};
use beckon_store::users::{User, UserChanges};
use beckon_store::{StoreError, invitations, surveys, tenancy, users};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

/// What an event would do.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DryRunResponse {
    /// Always `true`: nothing was written or sent.
    pub dry_run: bool,
    /// `no_contact` when the event names no user: it would reach no one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(null))]
    pub reason: Option<&'static str>,
    /// As a dispatch would count them.
    #[serde(flatten)]
    pub counts: DispatchCounts,
    /// Every survey of the project but the archived ones, oldest first: those the event
    /// matches, then the others.
    pub surveys: Vec<SurveyDecision>,
}

/// What would become of one survey.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SurveyDecision {
    pub survey_id: Uuid,
    pub name: String,
    pub version: i32,
    /// `created` (an invitation would be created), `cooldown`, `sample`, `condition_false`,
    /// `capped`, `errored`, `not_live` or `not_subscribed`.
    pub decision: SurveyOutcome,
    /// For `condition_false`, the JSON pointer of the false clause; for `capped` and
    /// `errored`, why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For `cooldown`: when it ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub until: Option<String>,
}

impl DryRunResponse {
    /// The answer for an event that names no user.
    pub fn without_contact() -> Self {
        Self {
            dry_run: true,
            reason: Some("no_contact"),
            counts: DispatchCounts::default(),
            surveys: Vec::new(),
        }
    }
}

/// What the event `event_key` about `user_ref` would do in `project_id` now, with `changes`
/// made to the user first (as `events/send` makes them before matching) and `event_data` as
/// its properties. Reads only.
pub async fn decide(
    conn: &mut beckon_store::Conn,
    project_id: Uuid,
    user_ref: &str,
    event_key: &str,
    event_data: Option<&serde_json::Value>,
    changes: Option<&UserChanges>,
) -> Result<DryRunResponse, StoreError> {
    // Refused as the real event would be.
    if let Some(attributes) = changes.and_then(|c| c.attributes.as_ref())
        && !users::attributes_fit(conn, project_id, user_ref, attributes).await?
    {
        return Err(StoreError::AttributesTooLarge);
    }
    let shared = &*conn;
    let (candidates, stored, caps) = futures_util::future::try_join3(
        surveys::candidates(shared, project_id, event_key, None),
        users::get_many(shared, &[(project_id, user_ref)]),
        tenancy::caps(shared, &[project_id]),
    )
    .await?;
    let now = OffsetDateTime::now_utc();
    let user = as_changed(
        stored.into_iter().next(),
        changes,
        project_id,
        user_ref,
        now,
    );
    let subject = Subject {
        now,
        event_data,
        user: user.as_ref().map(User::facts),
    };
    let mut allowance = match caps.first() {
        Some((_, cap)) => {
            let recent =
                invitations::count_recent(&*conn, project_id, user_ref, cap.period_seconds, &[])
                    .await?;
            Some(Allowance::after(*cap, recent))
        }
        None => None,
    };
    // The roll a new event would make.
    let trigger_id = Uuid::now_v7();
    let surveys::Candidates { live, unmatched } = candidates;
    let mut decisions = Vec::with_capacity(live.len() + unmatched.len());
    let targeted: Vec<_> = live
        .into_iter()
        .map(|survey| {
            let skip = Targeting::read(survey.conditions.as_deref(), survey.segments.as_deref())
                .skip(&subject);
            (survey.matched, skip)
        })
        .collect();
    // Every cooldown that may apply, read in one statement.
    let cooling: Vec<(Uuid, i64)> = targeted
        .iter()
        .filter(|(s, skip)| skip.is_none() && s.cooldown_seconds > 0)
        .map(|(s, _)| (s.survey_id, s.cooldown_seconds))
        .collect();
    let open: std::collections::HashMap<Uuid, OffsetDateTime> =
        invitations::open_cooldowns(conn, user_ref, &cooling)
            .await?
            .into_iter()
            .collect();
    let cooldowns: Vec<Option<invitations::Cooling>> = targeted
        .iter()
        .map(|(s, skip)| {
            let applies = skip.is_none() && s.cooldown_seconds > 0;
            open.get(&s.survey_id)
                .filter(|_| applies)
                .map(|until| invitations::Cooling {
                    until: Some(*until),
                })
        })
        .collect();
    for ((s, skip), cooling) in targeted.into_iter().zip(cooldowns) {
        let admitted = targeting::admits(
            s.sample_by,
            s.sample_rate,
            trigger_id,
            s.survey_id,
            user_ref,
        );
        let verdict = targeting::decide(
            skip.as_ref(),
            cooling.is_some(),
            admitted,
            allowance.as_mut(),
        );
        let (decision, reason) = match verdict {
            Verdict::Invite => (SurveyOutcome::Created, None),
            Verdict::Without(outcome, reason) => (outcome, reason),
        };
        decisions.push(SurveyDecision {
            survey_id: s.survey_id,
            name: s.name,
            version: s.version,
            decision,
            reason,
            until: cooling
                .and_then(|c| c.until)
                .filter(|_| decision == SurveyOutcome::Cooldown)
                .map(crate::routes::events::format_timestamp),
        });
    }
    decisions.extend(unmatched.into_iter().map(|s| SurveyDecision {
        survey_id: s.survey_id,
        name: s.name,
        version: s.version,
        decision: if s.live {
            SurveyOutcome::NotSubscribed
        } else {
            SurveyOutcome::NotLive
        },
        reason: None,
        until: None,
    }));
    Ok(DryRunResponse {
        dry_run: true,
        reason: None,
        counts: DispatchCounts::from_outcomes(decisions.iter().map(|d| d.decision)),
        surveys: decisions,
    })
}

/// The user as `changes` would leave them: attributes merged key by key, as an upsert does;
/// a user not stored yet is made (first seen now).
fn as_changed(
    stored: Option<User>,
    changes: Option<&UserChanges>,
    project_id: Uuid,
    user_ref: &str,
    now: OffsetDateTime,
) -> Option<User> {
    let Some(changes) = changes else {
        return stored;
    };
    let mut user = stored.unwrap_or_else(|| User {
        project_id,
        user_ref: user_ref.to_owned(),
        org_id: Uuid::nil(),
        email: None,
        name: None,
        phone: None,
        attributes: serde_json::Value::Object(Default::default()),
        trial_ends_at: None,
        created_at: now,
        updated_at: now,
        groups: Vec::new(),
    });
    if let Some(email) = &changes.email {
        user.email = Some(email.clone());
    }
    if let Some(name) = &changes.name {
        user.name = Some(name.clone());
    }
    if let Some(phone) = &changes.phone {
        user.phone = Some(phone.clone());
    }
    if let (Some(serde_json::Value::Object(new)), serde_json::Value::Object(kept)) =
        (&changes.attributes, &mut user.attributes)
    {
        for (key, value) in new {
            kept.insert(key.clone(), value.clone());
        }
    }
    if let Some(trial_ends_at) = changes.trial_ends_at {
        user.trial_ends_at = trial_ends_at;
    }
    if let Some(groups) = &changes.groups {
        user.groups = groups.clone();
    }
    Some(user)
}
