//! An example of every JSON answer, by the name of its schema, in one place: the spec puts
//! each on the answers that return it, a list's on its `Paginated_*` page, and a test checks
//! every one validates against its own schema, so an example cannot drift from the type.

use serde_json::{Value, json};

const ORG: &str = "0193a6b1-0c2d-7e4f-8a9b-1c2d3e4f5a6b";
const PROJECT: &str = "0193a6b2-5f1e-7c3d-9a4b-2e8f6c1d0a57";
const SURVEY: &str = "0193a6b3-7a2b-7d4e-8f5a-3b4c5d6e7f80";
const WEBHOOK: &str = "0193a6b4-1b2c-7e3d-9f4a-5b6c7d8e9fa1";
const TRIGGER: &str = "0193a6c0-2d3e-7f4a-8b5c-6d7e8f9a0b1c";
const JOB: &str = "0193a6c0-2d3e-7f4a-8b5c-6d7e8f9a0b1d";
const INVITATION: &str = "0193a6c0-4e5f-7a6b-9c7d-8e9fa0b1c2d3";
const MESSAGE: &str = "0193a6c0-6f7a-7b8c-8d9e-a0b1c2d3e4f5";
const SEGMENT: &str = "0193a6b3-9c4d-7e5f-8a6b-7c8d9e0f1a2b";
const TOKEN: &str = "0193a6a0-8a9b-7c0d-9e1f-2a3b4c5d6e7f";
const CREATED: &str = "2026-11-30T09:12:44Z";
const LINK: &str =
    "https://surveys.acme.example/surveys/Jx4v0nYbq2kT8sWm3pLr6uHc1dZa9eFg5iKo7yQwXtE";

/// The example of the schema named `name`, if it is an answer's.
pub fn of(name: &str) -> Option<Value> {
    if let Some(item) = name.strip_prefix("Paginated_") {
        return of(item).map(|item| {
            json!({"data": [item], "has_more": true, "next_cursor": "AZOmwC0-f0qLXG8aHw4iL2uQ"})
        });
    }
    Some(match name {
        "ProjectView" => json!({
            "id": PROJECT, "org_id": ORG, "name": "Acme web app",
            "allowed_origins": ["https://app.acme.example"], "publishable_key": "pk_4f8a2c9e1b7d3a6f",
            "widget_secret_issued": true, "invitation_cap": {"max": 1, "period_seconds": 1_209_600},
            "created_at": CREATED, "updated_at": CREATED
        }),
        "WidgetSecret" => json!({
            "widget_secret": "wsk_b3c9f1e7a2d84f6c9e0a1b2c3d4e5f60",
            "previous_secret_expires_at": "2026-12-01T09:12:44Z"
        }),
        "SurveyView" => json!({
            "id": SURVEY, "project_id": PROJECT, "name": "Why did you cancel?", "status": "live",
            "version": 2,
            "questions": [
                {"id": "nps", "type": "nps", "title": "How likely are you to recommend us?", "required": true},
                {"id": "why", "type": "mcq", "title": "What made you cancel?", "required": false,
                 "options": ["Too expensive", "Missing a feature", "Other"]}
            ],
            "trigger": {"events": ["subscription_cancelled", {"custom": "payment_failed"}]},
            "cooldown_seconds": 2_592_000, "sample_rate": 1.0, "sample_by": "event", "invitation_lifetime_seconds": 604_800,
            "trial_reminder_lead_seconds": 259_200, "created_at": CREATED, "updated_at": CREATED
        }),
        "SegmentView" => json!({
            "id": SEGMENT, "project_id": PROJECT, "name": "Enterprise users in France",
            "description": "Paying teams we interview in French",
            "condition": {"all": [
                {"contains": {"field": "groups", "value": "plan-enterprise"}},
                {"eq": {"field": "custom_fields.country", "value": "FR"}}
            ]},
            "created_at": CREATED, "updated_at": CREATED
        }),
        "TokenView" => json!({
            "id": TOKEN, "name": "billing backend", "scopes": ["send"], "created_at": CREATED,
            "expires_at": "2027-12-31T00:00:00Z", "revoked_at": null, "parent_id": null
        }),
        "CreatedToken" => merge(
            of("TokenView")?,
            json!({"secret": "oat_9Qm2vX7cLk4pT1sZ8rWn3bYh6dFa0eGu"}),
        ),
        "Revoked" => json!({"id": INVITATION, "revoked_at": CREATED}),
        "SubscriptionView" => json!({
            "id": WEBHOOK, "project_id": PROJECT, "url": "https://hooks.acme.example/beckon",
            "description": "CRM sync", "event_types": ["invitation.created", "response.ended"],
            "status": "active", "failures_in_streak": 0, "retry_policy": {"kind": "exponential"},
            "timeout_ms": 15_000, "format": "beckon", "payload_version": 1, "rate_limit": null, "ordered": false,
            "disabled_at": null, "disabled_reason": null, "failing_since": null,
            "last_success_at": CREATED, "verified_at": CREATED, "previous_secret_expires_at": null,
            "created_at": CREATED, "updated_at": CREATED
        }),
        "CreatedSubscription" => merge(
            of("SubscriptionView")?,
            json!({"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "verification": {"verified": true, "error": null}}),
        ),
        "VerifiedSubscription" => merge(
            of("SubscriptionView")?,
            json!({"verification": {"verified": true, "error": null}}),
        ),
        "RotatedSecret" => json!({
            "secret": "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "previous_secret_expires_at": "2026-12-01T09:12:44Z"
        }),
        "Queued" => json!({"queued": 1, "message_id": MESSAGE}),
        "RecoverOutcome" => json!({"queued": 12, "message_id": null, "skipped_payload_erased": 0}),
        "AttemptView" => json!({
            "id": 8812, "message_id": MESSAGE, "attempted_at": CREATED, "duration_ms": 142,
            "status_code": 200, "response_body": "ok", "error": null
        }),
        "DeliveryView" => json!({
            "id": "0193a6c0-7a8b-7c9d-8e0f-a1b2c3d4e5f6", "message_id": MESSAGE,
            "event_type": "response.ended", "status": "pending", "attempts": 2, "throttled": 0,
            "next_attempt_at": "2026-11-30T09:47:44Z", "last_attempt_at": "2026-11-30T09:17:44Z",
            "payload_erased_at": null, "created_at": CREATED
        }),
        "EventTypeList" => json!({"data": [{
            "type": "response.ended", "version": 1,
            "description": "A respondent finished a survey.",
            "schema": {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"}
        }]}),
        "DispatchResponse" => json!({
            "trigger_id": TRIGGER, "matched_surveys": 1, "created_count": 1,
            "suppressed_by_cooldown_count": 0, "suppressed_by_sample_count": 0, "errored_count": 0,
            "created_invitations": [{
                "survey_id": SURVEY, "user_ref": "user_8812", "magic_link_url": LINK,
                "expires_at": "2026-12-07T09:12:44Z"
            }]
        }),
        "DispatchAnswer" => of("DispatchResponse")?,
        "DryRunResponse" => json!({
            "dry_run": true, "matched_surveys": 3, "created_count": 1,
            "suppressed_by_cooldown_count": 1, "suppressed_by_sample_count": 0, "errored_count": 0,
            "suppressed_by_condition_count": 1, "suppressed_by_cap_count": 0,
            "surveys": [
                {"survey_id": SURVEY, "name": "Why did you cancel?", "version": 2, "decision": "created"},
                {"survey_id": "0193a6b3-7a2b-7d4e-8f5a-3b4c5d6e7f81", "name": "Onboarding", "version": 1,
                 "decision": "cooldown", "until": "2026-12-14T09:12:44Z"},
                {"survey_id": "0193a6b3-7a2b-7d4e-8f5a-3b4c5d6e7f82", "name": "Pro users", "version": 1,
                 "decision": "condition_false", "reason": "/all/0/eq"},
                {"survey_id": "0193a6b3-7a2b-7d4e-8f5a-3b4c5d6e7f83", "name": "Beta", "version": 1,
                 "decision": "not_live"}
            ]
        }),
        "SendEventResponse" => json!({
            "success": true, "trigger_id": TRIGGER, "job_id": JOB, "flow_type": "survey",
            "message": "Event queued for processing", "scheduled_for": null
        }),
        "SendEventBatchResponse" => json!({
            "results": [
                {"index": 0, "success": true, "trigger_id": TRIGGER, "job_id": JOB},
                {"index": 1, "success": false, "error": {
                    "status": 400, "code": "trigger_at_in_past",
                    "message": "trigger_at must be a future date", "pointer": "/events/1/trigger_at"
                }}
            ],
            "accepted_count": 1, "rejected_count": 1
        }),
        "TriggerView" => json!({
            "id": TRIGGER, "project_id": PROJECT, "flow_type": "survey", "trigger_type": "event",
            "status": "completed", "event": "trial_expired", "user_ref": "user_8812",
            "variables": {"first_name": "Ada", "plan_name": "Pro"},
            "source": {"type": "web_app", "ip": "203.0.113.45"}, "error": null, "reason": null,
            "created_at": CREATED, "scheduled_for": null, "started_at": "2026-11-30T09:12:44Z",
            "completed_at": "2026-11-30T09:12:45Z", "survey_id": null,
            "summary": {"total_contacts": 1, "matched": 2, "sent": 1,
                        "filtered": 1, "filtered_by": {"cooldown": 1, "sample": 0, "condition": 0, "cap": 0}, "failed": 0},
            "details_endpoint": format!("/api/v1/triggers/{TRIGGER}/workflow")
        }),
        "TriggerDetails" => json!({
            "trigger_id": TRIGGER, "status": "completed",
            "surveys": [
                {"survey_id": SURVEY, "survey_version": 2, "outcome": "created",
                 "reason": null, "invitation_id": INVITATION},
                {"survey_id": "0193a6b3-7a2b-7d4e-8f5a-3b4c5d6e7f81", "survey_version": 1,
                 "outcome": "cooldown", "reason": null, "invitation_id": null,
                 "until": "2026-12-14T09:12:44Z"},
                {"survey_id": "0193a6b3-7a2b-7d4e-8f5a-3b4c5d6e7f83", "survey_version": 1,
                 "outcome": "not_subscribed", "reason": null, "invitation_id": null}
            ]
        }),
        "UpsertUserResponse" => json!({
            "user": {
                "project_id": PROJECT, "user_ref": "user_8812", "email": "ada@example.com",
                "name": "Ada Lovelace", "phone": null, "attributes": {"plan": "pro"}, "groups": ["plan-pro"],
                "trial_ends_at": "2027-01-15T00:00:00Z", "created_at": CREATED, "updated_at": CREATED
            },
            "scheduled_reminders": [{"trigger_id": TRIGGER, "survey_id": SURVEY, "fire_at": "2027-01-12T00:00:00Z"}]
        }),
        "ErasedUser" => json!({
            "user_ref": "user_8812",
            "erased": {"invitations": 2, "responses": 1, "triggers": 3, "webhook_messages": 4, "user": true}
        }),
        "ResponseView" => json!({
            "id": "0193a6c1-0a1b-7c2d-8e3f-4a5b6c7d8e9f", "invitation_id": INVITATION,
            "submitted_by": "user_8812", "survey_version": 2, "status": "completed",
            "created_at": CREATED, "displayed_at": CREATED, "completed_at": "2026-11-30T09:14:02Z",
            "answers": {"nps": 9, "why": "Too expensive"}
        }),
        "PendingList" => json!({"data": [{
            "invitation_id": INVITATION, "magic_link_url": LINK, "expires_at": "2026-12-07T09:12:44Z",
            "survey": {"id": SURVEY, "name": "Why did you cancel?", "version": 2}
        }]}),
        "InvitationView" => json!({
            "invitation_id": INVITATION, "expires_at": "2026-12-07T09:12:44Z",
            "survey": {"id": SURVEY, "name": "Why did you cancel?", "version": 2, "questions": [
                {"id": "nps", "type": "nps", "title": "How likely are you to recommend us?", "required": true}
            ]},
            "response": {"status": "in_progress", "answers": {"nps": 9}}
        }),
        "SavedAnswer" => json!({"question_id": "nps", "value": 9}),
        "Completed" => json!({"status": "completed"}),
        _ => return None,
    })
}

/// `base` with `extra`'s fields (a flattened view and what it adds).
fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
    base
}
