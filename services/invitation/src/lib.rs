//! The invitation service: for each matched event, applies every matched survey's cooldown and
//! sample rate, creates the invitations with their magic links, records the outcome of every
//! survey on the trigger, and — when a caller waits — replies once with the whole result.

use anyhow::Context as _;
use beckon_bus::Topology;
use beckon_bus::topology::queues;
use beckon_domain::envelope::{
    DispatchCompleted, Envelope, EventMatched, InvitationCreated, InvitationDetails,
    IssuedInvitation, MatchedSurvey, SurveyDetails, TriggerDetails, UserDetails,
};
use beckon_domain::outcome::DispatchCounts;
use beckon_domain::outcome::SurveyOutcome;
use beckon_domain::{ids, sampling, secret};
use beckon_runtime::InfraConfig;
use beckon_store::StoreError;
use beckon_store::invitations::{self, Inserted, NewInvitation};
use beckon_store::triggers::{self, SurveyResult};
use beckon_store::users::{self, User};
use beckon_worker::{Emit, HandleError, Handler, Item, error_chain};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use std::collections::HashSet;
use time::{Duration, OffsetDateTime};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The name this consumer records processed envelopes under.
pub const CONSUMER: &str = "invitation";

#[derive(Debug, Clone)]
pub struct Config {
    pub infra: InfraConfig,
    /// `BECKON_SECRET_KEYS` (newest first) or `BECKON_SECRET_KEY` (required): seal magic-link
    /// tokens for the in-app widget.
    pub sealing_keys: beckon_webhooks::sealed::SealingKeys,
    /// `BECKON_PUBLIC_URL`: the base of magic links, as end users reach the gateway
    /// (default `http://127.0.0.1:8080`).
    pub public_url: String,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            sealing_keys: beckon_webhooks::sealing_keys_from_env()?,
            infra: InfraConfig::from_env()?,
            public_url: beckon_runtime::env_or("BECKON_PUBLIC_URL", "http://127.0.0.1:8080")
                .trim_end_matches('/')
                .to_owned(),
        })
    }
}

/// Creates the invitations of one matched event.
pub struct Inviter {
    pub public_url: String,
    pub topology: Topology,
    pub sealing_keys: beckon_webhooks::sealed::SealingKeys,
}

/// What became of one matched survey before any invitation is written.
enum Decision {
    /// No invitation: suppressed by the cooldown or the sample rate.
    Suppressed(SurveyResult),
    /// An invitation to create, with the magic link it carries.
    Invite(Box<NewInvitation>, IssuedInvitation),
}

impl Inviter {
    /// Applies the survey's cooldown and sample rate; an admitted match gets a new invitation
    /// (not yet written) and claims the cooldown window.
    async fn decide(
        &self,
        env: &Envelope<EventMatched>,
        survey: &MatchedSurvey,
        conn: &mut AsyncPgConnection,
    ) -> Result<Decision, StoreError> {
        let trigger_id = env.correlation_id;
        let user = env.data.user_ref.as_str();
        let suppressed = |outcome| {
            Decision::Suppressed(SurveyResult {
                survey_id: survey.survey_id,
                survey_version: survey.version,
                outcome,
                reason: None,
                invitation_id: None,
            })
        };
        // Seeded from (trigger, survey): a redelivered envelope rolls the same.
        let admitted = sampling::admits(survey.sample_rate, trigger_id, survey.survey_id);
        if survey.cooldown_seconds > 0 {
            // Cooldown is checked before the roll; only an admitted match claims the window,
            // since a sample miss creates no invitation and so starts no cooldown.
            let in_cooldown = if admitted {
                !invitations::claim_cooldown(conn, survey.survey_id, user, survey.cooldown_seconds)
                    .await?
            } else {
                invitations::in_cooldown(conn, survey.survey_id, user, survey.cooldown_seconds)
                    .await?
            };
            if in_cooldown {
                return Ok(suppressed(SurveyOutcome::Cooldown));
            }
        }
        if !admitted {
            return Ok(suppressed(SurveyOutcome::Sample));
        }
        let token = secret::new_link_token();
        let expires_at =
            OffsetDateTime::now_utc() + Duration::seconds(survey.invitation_lifetime_seconds);
        let invitation = NewInvitation {
            id: ids::invitation_id(trigger_id, survey.survey_id),
            org_id: env.org_id,
            project_id: env.project_id,
            survey_id: survey.survey_id,
            survey_version: survey.version,
            trigger_id,
            user_ref: user.to_owned(),
            token_hash: token.hash(),
            token_sealed: Some(self.sealing_keys.seal(token.expose().as_bytes())),
            expires_at,
        };
        // Sealed for the bus: the reply and the announcement pass through queues and the
        // outbox, which must never hold a usable link.
        let link = IssuedInvitation {
            survey_id: survey.survey_id,
            user_ref: env.data.user_ref.clone(),
            link: self.sealing_keys.seal_link(&format!(
                "{}/surveys/{}",
                self.public_url,
                token.expose()
            )),
            expires_at,
        };
        Ok(Decision::Invite(Box::new(invitation), link))
    }

    /// One survey's outcome, inside its own savepoint: an error here marks this survey
    /// `errored` without undoing the others.
    async fn invite(
        &self,
        env: &Envelope<EventMatched>,
        survey: &MatchedSurvey,
        conn: &mut AsyncPgConnection,
    ) -> Result<(SurveyResult, Option<IssuedInvitation>), StoreError> {
        match self.decide(env, survey, conn).await? {
            Decision::Suppressed(result) => Ok((result, None)),
            Decision::Invite(invitation, link) => {
                let inserted = invitations::insert(conn, &invitation).await?;
                Ok(created(
                    &invitation,
                    (inserted == Inserted::Created).then_some(link),
                ))
            }
        }
    }

    /// Closes the trigger with its results, logs the counts, and says what to emit: the
    /// announcements of the invitations created, and the reply to a waiting caller.
    fn finish(
        &self,
        env: &Envelope<EventMatched>,
        results: &[SurveyResult],
        created: Vec<IssuedInvitation>,
        counts: DispatchCounts,
        user: Option<&User>,
    ) -> Vec<Emit> {
        let mut emits = self.announce(env, results, &created, user);
        tracing::info!(
            matched = counts.matched_surveys,
            created = counts.created_count,
            cooldown = counts.suppressed_by_cooldown_count,
            sample = counts.suppressed_by_sample_count,
            errored = counts.errored_count,
            "trigger completed"
        );
        if let Some(reply_to) = &env.data.reply_to {
            let reply = Envelope::child_of(
                env,
                "reply",
                DispatchCompleted {
                    trigger_id: env.correlation_id,
                    counts,
                    created_invitations: created,
                },
            );
            emits.push(Emit::reply(&reply_to.queue, &reply));
        }
        emits
    }
}

/// The result of a survey whose invitation was written; `link` only when this handling
/// created it (a repeat announces nothing again).
fn created(
    invitation: &NewInvitation,
    link: Option<IssuedInvitation>,
) -> (SurveyResult, Option<IssuedInvitation>) {
    let result = SurveyResult {
        survey_id: invitation.survey_id,
        survey_version: invitation.survey_version,
        outcome: SurveyOutcome::Created,
        reason: None,
        invitation_id: Some(invitation.id),
    };
    (result, link)
}

impl Handler<EventMatched> for Inviter {
    async fn handle(
        &self,
        env: &Envelope<EventMatched>,
        conn: &mut AsyncPgConnection,
    ) -> Result<Vec<Emit>, HandleError> {
        let mut results = Vec::with_capacity(env.data.surveys.len());
        let mut created = Vec::new();
        for survey in &env.data.surveys {
            let outcome = conn
                .transaction::<_, StoreError, _>(async |conn| self.invite(env, survey, conn).await)
                .await;
            match outcome {
                Ok((result, link)) => {
                    results.push(result);
                    created.extend(link);
                }
                // The database is away: retry the whole envelope rather than report an error.
                Err(err) if err.is_transient() => return Err(HandleError::Retryable(err)),
                Err(err) => {
                    tracing::error!(survey_id = %survey.survey_id, error = %error_chain(&err), "invitation failed");
                    results.push(SurveyResult {
                        survey_id: survey.survey_id,
                        survey_version: survey.version,
                        outcome: SurveyOutcome::Errored,
                        reason: Some(error_chain(&err)),
                        invitation_id: None,
                    });
                }
            }
        }
        let counts = triggers::complete(conn, env.correlation_id, &results).await?;
        let user = if created.is_empty() {
            None
        } else {
            users::get(conn, env.project_id, env.data.user_ref.as_str()).await?
        };
        Ok(self.finish(env, &results, created, counts, user.as_ref()))
    }

    /// Every survey of every envelope decided first; then one insert of every invitation, one
    /// statement recording every outcome, one closing every trigger and one reading every user
    /// invited, all sent together (the connection pipelines them). No savepoints: should one
    /// survey fail, the batch is handled again envelope by envelope, where that survey alone is
    /// marked `errored`.
    async fn handle_batch(
        &self,
        items: &[Item<'_, EventMatched>],
        conn: &mut AsyncPgConnection,
    ) -> Result<Vec<Vec<Emit>>, HandleError> {
        let mut decided = Vec::with_capacity(items.len());
        for item in items {
            let mut decisions = Vec::with_capacity(item.env.data.surveys.len());
            for survey in &item.env.data.surveys {
                decisions.push(self.decide(item.env, survey, conn).await?);
            }
            decided.push(decisions);
        }
        let invitations: Vec<NewInvitation> = decided
            .iter()
            .flatten()
            .filter_map(|d| match d {
                Decision::Invite(invitation, _) => Some(NewInvitation::clone(invitation)),
                Decision::Suppressed(_) => None,
            })
            .collect();
        // An outcome does not depend on whether this handling or an earlier one inserted the
        // invitation; only the announcement does.
        let results: Vec<Vec<SurveyResult>> = decided
            .iter()
            .map(|decisions| {
                decisions
                    .iter()
                    .map(|decision| match decision {
                        Decision::Suppressed(result) => result.clone(),
                        Decision::Invite(invitation, _) => created(invitation, None).0,
                    })
                    .collect()
            })
            .collect();
        let done: Vec<_> = items
            .iter()
            .zip(&results)
            .map(|(item, results)| (item.env.correlation_id, results.as_slice()))
            .collect();
        let invited: Vec<_> = items
            .iter()
            .zip(&decided)
            .filter(|(_, decisions)| decisions.iter().any(|d| matches!(d, Decision::Invite(..))))
            .map(|(item, _)| (item.env.project_id, item.env.data.user_ref.as_str()))
            .collect();
        let (inserted, counts, users) = {
            let conn = &*conn;
            futures_util::future::try_join3(
                invitations::insert_many(conn, &invitations),
                triggers::complete_many(conn, &done),
                users::get_many(conn, &invited),
            )
            .await?
        };
        let inserted: HashSet<Uuid> = inserted.into_iter().collect();
        Ok(items
            .iter()
            .zip(decided)
            .zip(results)
            .zip(counts)
            .map(|(((item, decisions), results), counts)| {
                let links: Vec<_> = decisions
                    .into_iter()
                    .filter_map(|decision| match decision {
                        Decision::Invite(invitation, link) => {
                            inserted.contains(&invitation.id).then_some(link)
                        }
                        Decision::Suppressed(_) => None,
                    })
                    .collect();
                let user = users.iter().find(|u| {
                    u.project_id == item.env.project_id
                        && u.user_ref == item.env.data.user_ref.as_str()
                });
                item.span
                    .in_scope(|| self.finish(item.env, &results, links, counts, user))
            })
            .collect())
    }
}

impl Inviter {
    /// One `invitation.created` envelope per invitation created, for the webhook service. Its
    /// id derives from the matched envelope and the survey, so a redelivery repeats it exactly.
    fn announce(
        &self,
        env: &Envelope<EventMatched>,
        results: &[SurveyResult],
        created: &[IssuedInvitation],
        user: Option<&User>,
    ) -> Vec<Emit> {
        if created.is_empty() {
            return Vec::new();
        }
        let user = UserDetails {
            user_ref: env.data.user_ref.clone(),
            email: user.and_then(|u| u.email.clone()),
            name: user.and_then(|u| u.name.clone()),
            attributes: user
                .and_then(|u| u.attributes.as_object().cloned())
                .unwrap_or_default(),
        };
        let mut emits = Vec::with_capacity(created.len());
        for link in created {
            let Some(result) = results.iter().find(|r| r.survey_id == link.survey_id) else {
                continue;
            };
            let Some(matched) = env
                .data
                .surveys
                .iter()
                .find(|s| s.survey_id == link.survey_id)
            else {
                continue;
            };
            let announcement = Envelope::child_of(
                env,
                &format!("invitation.created/{}", link.survey_id),
                InvitationCreated {
                    invitation: InvitationDetails {
                        id: result.invitation_id.unwrap_or_default(),
                        link: link.link.clone(),
                        expires_at: link.expires_at,
                    },
                    survey: SurveyDetails {
                        id: matched.survey_id,
                        name: matched.name.clone(),
                        version: matched.version,
                    },
                    user: user.clone(),
                    trigger: TriggerDetails {
                        id: env.correlation_id,
                        trigger_type: env.data.trigger_type,
                        event: env.data.event.clone(),
                        parameters: env.data.event_data.clone(),
                    },
                },
            );
            emits.push(Emit::event(&self.topology, &announcement));
        }
        emits
    }
}

/// Runs until `cancel` fires; then finishes in-flight messages and returns.
pub async fn run(config: Config, cancel: CancellationToken) -> anyhow::Result<()> {
    let public_url = config.public_url.clone();
    let sealing_keys = config.sealing_keys.clone();
    beckon_worker::serve(
        CONSUMER,
        &config.infra,
        "127.0.0.1:9102",
        queues::invitation(),
        |topology: &Topology| Inviter {
            public_url,
            topology: topology.clone(),
            sealing_keys,
        },
        // No background loop of its own: a sidecar that only waits for the end.
        |_, _, cancel: CancellationToken| async move { cancel.cancelled().await },
        cancel,
    )
    .await
    .context("The invitation service failed to start")
}
