//! The invitation service: for each matched event, applies every matched survey's cooldown and
//! sample rate, creates the invitations with their magic links, records the outcome of every
//! survey on the trigger, and — when a caller waits — replies once with the whole result.

use anyhow::Context as _;
use beckon_bus::Topology;
use beckon_bus::topology::queues;
use beckon_domain::cap::InvitationCap;
use beckon_domain::envelope::{
    DispatchCompleted, Envelope, EventMatched, InvitationCreated, InvitationDetails,
    IssuedInvitation, MatchedSurvey, SurveyDetails, TriggerDetails, UnmatchedSurvey, UserDetails,
};
use beckon_domain::outcome::DispatchCounts;
use beckon_domain::outcome::SurveyOutcome;
use beckon_domain::targeting::{self, Allowance, Verdict};
use beckon_domain::{ids, secret};
use beckon_runtime::InfraConfig;
use beckon_store::invitations::{self, Cooling, NewInvitation};
use beckon_store::triggers::{self, SurveyResult};
use beckon_store::users::{self, User};
use beckon_store::{surveys, tenancy};
use beckon_worker::{Emit, HandleError, Handled, Handler, Item};
use diesel_async::AsyncPgConnection;
use std::collections::{HashMap, HashSet};
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
    /// No invitation: suppressed by the cooldown or the sample rate, or errored.
    Without(SurveyResult),
    /// An invitation to create, with the magic link it carries.
    Invite(Box<NewInvitation>, IssuedInvitation),
}

/// Why a matched survey errored when it was deleted between the match and its invitation.
const SURVEY_DELETED: &str = "the survey was deleted after the event matched it";

impl Inviter {
    /// The outcome of `survey` for `env`, given whether the survey still exists, whether the
    /// user is in its cooldown window (claimed for an admitted match, only read for a sample
    /// miss, which creates no invitation and so starts no cooldown), and, under the project's
    /// cap, the invitations the user may still get (one is taken when this one is created).
    fn decide(
        &self,
        env: &Envelope<EventMatched>,
        survey: &MatchedSurvey,
        exists: bool,
        cooling: Option<Cooling>,
        cap: Option<&mut Allowance>,
    ) -> Decision {
        let without = |outcome, reason: Option<&str>| {
            Decision::Without(SurveyResult {
                survey_id: survey.survey_id,
                survey_version: survey.version,
                outcome,
                reason: reason.map(str::to_owned),
                invitation_id: None,
                until: cooling
                    .and_then(|c| c.until)
                    .filter(|_| outcome == SurveyOutcome::Cooldown),
            })
        };
        if !exists {
            tracing::warn!(survey_id = %survey.survey_id, "{SURVEY_DELETED}; its outcome is errored");
            return without(SurveyOutcome::Errored, Some(SURVEY_DELETED));
        }
        let admitted = admits(env, survey);
        if let Verdict::Without(outcome, reason) =
            targeting::decide(survey.skip.as_ref(), cooling.is_some(), admitted, cap)
        {
            return without(outcome, reason.as_deref());
        }
        let trigger_id = env.correlation_id;
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
            user_ref: env.data.user_ref.as_str().to_owned(),
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
        Decision::Invite(Box::new(invitation), link)
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
            condition = counts.suppressed_by_condition_count,
            capped = counts.suppressed_by_cap_count,
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

/// Whether `survey`'s cooldown is claimed or read: when it has one, still exists, and the
/// matcher did not already skip it (a skipped survey starts no cooldown).
fn claims_cooldown(survey: &MatchedSurvey, exists: bool) -> bool {
    survey.cooldown_seconds > 0 && exists && survey.skip.is_none()
}

/// Whether the sample roll admits `survey` for this event (see [`targeting::admits`]).
fn admits(env: &Envelope<EventMatched>, survey: &MatchedSurvey) -> bool {
    targeting::admits(
        survey.sample_by,
        survey.sample_rate,
        env.correlation_id,
        survey.survey_id,
        env.data.user_ref.as_str(),
    )
}

/// The result of a survey the event did not match.
fn unmatched(survey: &UnmatchedSurvey) -> SurveyResult {
    SurveyResult {
        survey_id: survey.survey_id,
        survey_version: survey.version,
        outcome: if survey.live {
            SurveyOutcome::NotSubscribed
        } else {
            SurveyOutcome::NotLive
        },
        reason: None,
        invitation_id: None,
        until: None,
    }
}

/// The result of a survey whose invitation is written (by this handling or an earlier one).
fn created(invitation: &NewInvitation) -> SurveyResult {
    SurveyResult {
        survey_id: invitation.survey_id,
        survey_version: invitation.survey_version,
        outcome: SurveyOutcome::Created,
        reason: None,
        invitation_id: Some(invitation.id),
        until: None,
    }
}

impl Handler<EventMatched> for Inviter {
    type Then = ();

    /// Three round trips whatever the batch holds: which matched surveys still exist, and the
    /// caps of the batch's projects; every cooldown claimed or read (pipelined, in order, so
    /// two events of one user for one survey in a batch see each other), after the lock and
    /// the count of recent invitations of every user of a capped project; then one insert of
    /// every invitation, one statement recording every outcome, one closing every trigger and
    /// one reading every user invited, sent together (with the cooldowns of capped users,
    /// claimed only for what was created). A survey deleted since the match is `errored`, the
    /// others go on; any other failure fails the batch, whose envelopes are then handled one
    /// by one.
    async fn handle(
        &self,
        items: &[Item<'_, EventMatched>],
        conn: &mut AsyncPgConnection,
    ) -> Result<Handled, HandleError> {
        let conn = &*conn;
        let mut ids: Vec<Uuid> = items
            .iter()
            .flat_map(|item| item.env.data.surveys.iter().map(|s| s.survey_id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut projects: Vec<Uuid> = items.iter().map(|item| item.env.project_id).collect();
        projects.sort_unstable();
        projects.dedup();
        // Locked against deletion until the commit, so the claims and invitations below can
        // refer to them; a survey of another project counts as gone.
        let (present, caps) = futures_util::future::try_join(
            surveys::existing(conn, &ids),
            tenancy::caps(conn, &projects),
        )
        .await?;
        let present: HashMap<Uuid, Uuid> = present.into_iter().collect();
        let caps: HashMap<Uuid, InvitationCap> = caps.into_iter().collect();
        let exists = |env: &Envelope<EventMatched>, s: &MatchedSurvey| {
            present.get(&s.survey_id) == Some(&env.project_id)
        };
        let user = |item: &Item<'_, EventMatched>| item.env.data.user_ref.as_str().to_owned();
        let capped = |item: &Item<'_, EventMatched>| caps.contains_key(&item.env.project_id);
        // The users of capped projects who may be invited, each once, in one fixed order.
        let mut limited: Vec<(Uuid, &str)> = items
            .iter()
            .filter(|item| {
                capped(item)
                    && item
                        .env
                        .data
                        .surveys
                        .iter()
                        .any(|s| s.skip.is_none() && exists(item.env, s))
            })
            .map(|item| (item.env.project_id, item.env.data.user_ref.as_str()))
            .collect();
        limited.sort_unstable();
        limited.dedup();
        let handled: Vec<Uuid> = items.iter().map(|item| item.env.correlation_id).collect();
        let locks = futures_util::future::try_join_all(
            limited
                .iter()
                .map(|(project, user)| invitations::lock_user(conn, *project, user)),
        );
        let counts = futures_util::future::try_join_all(limited.iter().map(|(project, user)| {
            let period = caps.get(project).map_or(0, |c| c.period_seconds);
            invitations::count_recent(conn, *project, user, period, &handled)
        }));
        let cooldowns = futures_util::future::try_join_all(
            items
                .iter()
                .flat_map(|item| item.env.data.surveys.iter().map(move |s| (item, s)))
                .filter(|(item, s)| claims_cooldown(s, exists(item.env, s)))
                .map(|(item, s)| {
                    let (id, user, secs) = (s.survey_id, user(item), s.cooldown_seconds);
                    // A capped user's cooldown is only read: the cap may still leave the
                    // survey out, and it is claimed below for what is created.
                    if admits(item.env, s) && !capped(item) {
                        futures_util::future::Either::Left(invitations::claim_cooldown(
                            conn, id, &user, secs,
                        ))
                    } else {
                        futures_util::future::Either::Right(invitations::in_cooldown(
                            conn, id, &user, secs,
                        ))
                    }
                }),
        );
        let (_, counts, cooldowns) =
            futures_util::future::try_join3(locks, counts, cooldowns).await?;
        let mut allowances: HashMap<(Uuid, &str), Allowance> = limited
            .iter()
            .zip(counts)
            .filter_map(|(key, count)| {
                let cap = *caps.get(&key.0)?;
                Some((*key, Allowance::after(cap, count)))
            })
            .collect();
        let mut cooldowns = cooldowns.into_iter();
        // A capped user's cooldowns were only read, so what this batch invites them to counts
        // as claimed for the events after it.
        let mut invited_here: HashSet<(Uuid, &str)> = HashSet::new();
        let decided: Vec<Vec<Decision>> = items
            .iter()
            .map(|item| {
                item.span.in_scope(|| {
                    item.env
                        .data
                        .surveys
                        .iter()
                        .map(|s| {
                            let exists = exists(item.env, s);
                            let user = item.env.data.user_ref.as_str();
                            let read = if claims_cooldown(s, exists) {
                                cooldowns.next().flatten()
                            } else {
                                None
                            };
                            // Invited a moment ago in this batch: cooling until its cooldown
                            // ends (from a time this handling does not know).
                            let cooling = read.or_else(|| {
                                (s.cooldown_seconds > 0
                                    && invited_here.contains(&(s.survey_id, user)))
                                .then_some(Cooling { until: None })
                            });
                            let key = (item.env.project_id, user);
                            let decision =
                                self.decide(item.env, s, exists, cooling, allowances.get_mut(&key));
                            if capped(item) && matches!(decision, Decision::Invite(..)) {
                                invited_here.insert((s.survey_id, user));
                            }
                            decision
                        })
                        .collect()
                })
            })
            .collect();
        let invitations: Vec<NewInvitation> = decided
            .iter()
            .flatten()
            .filter_map(|d| match d {
                Decision::Invite(invitation, _) => Some(NewInvitation::clone(invitation)),
                Decision::Without(_) => None,
            })
            .collect();
        // An outcome does not depend on whether this handling or an earlier one inserted the
        // invitation; only the announcement does.
        // The surveys the event did not match are recorded too, with why, so the trigger
        // lists every survey of the project.
        let results: Vec<Vec<SurveyResult>> = items
            .iter()
            .zip(&decided)
            .map(|(item, decisions)| {
                decisions
                    .iter()
                    .map(|decision| match decision {
                        Decision::Without(result) => result.clone(),
                        Decision::Invite(invitation, _) => created(invitation),
                    })
                    .chain(item.env.data.unmatched.iter().map(unmatched))
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
        // A capped user's cooldowns were only read: claimed now, for what is created.
        let claims: Vec<(Uuid, &str, i64)> = items
            .iter()
            .zip(&decided)
            .filter(|(item, _)| capped(item))
            .flat_map(|(item, decisions)| {
                item.env
                    .data
                    .surveys
                    .iter()
                    .zip(decisions)
                    .filter_map(|(s, d)| {
                        (matches!(d, Decision::Invite(..)) && s.cooldown_seconds > 0).then_some((
                            s.survey_id,
                            item.env.data.user_ref.as_str(),
                            s.cooldown_seconds,
                        ))
                    })
            })
            .collect();
        let claimed =
            futures_util::future::try_join_all(claims.iter().map(|(survey, user, secs)| {
                invitations::claim_cooldown(conn, *survey, user, *secs)
            }));
        let (inserted, counts, users, _) = futures_util::future::try_join4(
            invitations::insert_many(conn, &invitations),
            triggers::complete_many(conn, &done),
            users::get_many(conn, &invited),
            claimed,
        )
        .await?;
        let inserted: HashSet<Uuid> = inserted.into_iter().collect();
        Ok(Handled::emits(
            items
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
                            Decision::Without(_) => None,
                        })
                        .collect();
                    let user = users.iter().find(|u| {
                        u.project_id == item.env.project_id
                            && u.user_ref == item.env.data.user_ref.as_str()
                    });
                    item.span
                        .in_scope(|| self.finish(item.env, &results, links, counts, user))
                })
                .collect(),
        ))
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
            groups: user.map(|u| u.groups.clone()).unwrap_or_default(),
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
                        version_created_at: None,
                    },
                    user: user.clone(),
                    trigger: TriggerDetails {
                        id: env.correlation_id,
                        trigger_type: env.data.trigger_type,
                        event: env.data.event.clone(),
                        parameters: env.data.event_data.clone(),
                        variables: env.data.variables.clone(),
                        source: env.data.source.clone(),
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
