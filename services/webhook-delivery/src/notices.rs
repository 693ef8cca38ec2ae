//! Operational notices: `webhook.failing` when a subscription's attempts begin to fail (then
//! daily while they go on failing) and `webhook.disabled` when it is disabled for it. Each goes
//! to the organization's other active subscriptions that name its type, in the transaction
//! that records the failure, so a notice is sent exactly when its cause is stored.

use beckon_store::StoreError;
use beckon_store::webhooks::{
    self, AttemptRecord, Delivery, FailingStreak, NewMessage, Subscription,
};
use beckon_webhooks::payload::{
    DISABLED, FAILING, FailedAttempt, SubscriptionDisabled, SubscriptionFailing, Tenanted,
    WebhookBody,
};
use beckon_webhooks::sealed::SealingKeys;
use diesel_async::AsyncPgConnection;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

/// A notice sent, to be counted and logged once its transaction commits.
#[derive(Debug, Clone)]
pub struct Sent {
    kind: &'static str,
    subscription_id: Uuid,
    recipients: usize,
    detail: String,
}

/// Counts and logs notices whose transaction committed.
pub fn announce(sent: &[Sent]) {
    for notice in sent {
        metrics::counter!("beckon_webhook_notices_total", "type" => notice.kind).increment(1);
        tracing::warn!(
            subscription_id = %notice.subscription_id,
            notice = notice.kind,
            recipients = notice.recipients,
            detail = %notice.detail,
            "webhook subscription notice"
        );
    }
}

/// The sealed message of a notice about a subscription of `project_id`.
async fn message<T: Serialize>(
    conn: &mut AsyncPgConnection,
    keys: &SealingKeys,
    kind: &'static str,
    project_id: Uuid,
    occurred_at: OffsetDateTime,
    data: T,
) -> Result<NewMessage, StoreError> {
    let tenant = webhooks::tenant(conn, project_id).await?;
    let id = Uuid::now_v7();
    let org_id = tenant.organization.id;
    let body = WebhookBody {
        id,
        kind: kind.to_owned(),
        version: 1,
        occurred_at,
        project_id,
        data: Tenanted::new(tenant, data),
    };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    Ok(NewMessage {
        id,
        org_id,
        project_id,
        event_type: kind.to_owned(),
        version: 1,
        body_encrypted: keys.seal(&body),
        occurred_at,
        user_ref: None,
    })
}

/// Sends `webhook.failing` for each streak due a notice, describing the last failed attempt
/// of its subscription among `attempts`.
pub async fn failing(
    conn: &mut AsyncPgConnection,
    keys: &SealingKeys,
    streaks: &[FailingStreak],
    attempts: &[(&Delivery, &AttemptRecord)],
) -> Result<Vec<Sent>, StoreError> {
    let mut sent = Vec::with_capacity(streaks.len());
    for streak in streaks {
        let last = attempts
            .iter()
            .rev()
            .find(|(d, r)| {
                d.subscription_id == streak.subscription_id
                    && matches!(
                        r.next,
                        webhooks::NextStep::RetryAt(_) | webhooks::NextStep::GiveUp
                    )
            })
            .map(|(_, r)| *r);
        let data = SubscriptionFailing {
            subscription_id: streak.subscription_id,
            description: streak.description.clone(),
            failing_since: streak.failing_since,
            failed_attempts: streak.failures_in_streak.max(0) as u32,
            last_attempt: FailedAttempt {
                attempted_at: streak.recorded_at,
                status_code: last
                    .and_then(|r| r.status_code)
                    .and_then(|s| u16::try_from(s).ok()),
                error: last.and_then(|r| r.error.clone()),
            },
        };
        let detail = match (&data.last_attempt.status_code, &data.last_attempt.error) {
            (Some(status), _) => format!("answered {status}"),
            (None, Some(error)) => error.clone(),
            (None, None) => String::new(),
        };
        let message = message(
            conn,
            keys,
            FAILING,
            streak.project_id,
            streak.recorded_at,
            data,
        )
        .await?;
        let recipients = webhooks::notify(conn, &message, streak.subscription_id).await?;
        sent.push(Sent {
            kind: FAILING,
            subscription_id: streak.subscription_id,
            recipients,
            detail,
        });
    }
    Ok(sent)
}

/// Sends `webhook.disabled` about `sub`, disabled at `at` for `reason`. `sub` is as it was
/// before the attempt that disabled it, which the streak counts as well.
pub async fn disabled(
    conn: &mut AsyncPgConnection,
    keys: &SealingKeys,
    sub: &Subscription,
    reason: &str,
    at: OffsetDateTime,
) -> Result<Sent, StoreError> {
    let data = SubscriptionDisabled {
        subscription_id: sub.id,
        description: sub.description.clone(),
        reason: reason.to_owned(),
        disabled_at: at,
        failing_since: sub.failing_since.unwrap_or(at),
        failed_attempts: (sub.failures_in_streak.max(0) as u32).saturating_add(1),
    };
    let message = message(conn, keys, DISABLED, sub.project_id, at, data).await?;
    let recipients = webhooks::notify(conn, &message, sub.id).await?;
    Ok(Sent {
        kind: DISABLED,
        subscription_id: sub.id,
        recipients,
        detail: reason.to_owned(),
    })
}
