use super::*;
use crate::user_ref::UserRef;
use std::path::PathBuf;

fn received() -> Envelope<EventReceived> {
    Envelope::new(
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        EventReceived {
            trigger_type: TriggerType::Dispatch,
            user_ref: UserRef::parse("u1").unwrap(),
            event: LifecycleEvent::TrialExpired,
            reply_to: None,
            survey_id: None,
            event_data: Some(serde_json::json!({"plan": "pro"})),
            variables: Some(object(serde_json::json!({"first_name": "Ada"}))),
            source: Some(object(
                serde_json::json!({"type": "api", "ip": "192.0.2.7"}),
            )),
        },
    )
}

fn object(value: serde_json::Value) -> JsonObject {
    match value {
        serde_json::Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

use crate::event::LifecycleEvent;

#[test]
fn an_envelope_round_trips_and_names_its_routing_key() {
    let env = received();
    assert_eq!(env.routing_key(), "event.received.v1");
    let back: Envelope<EventReceived> = decode(&env.to_json()).unwrap();
    assert_eq!(back, env);
}

#[test]
fn decode_tells_the_four_kinds_of_bad_message_apart() {
    assert_eq!(
        decode::<EventReceived>(b"{not json").unwrap_err().reason(),
        "malformed_json"
    );
    assert_eq!(
        decode::<EventReceived>(b"{\"id\": 1}")
            .unwrap_err()
            .reason(),
        "schema_violation"
    );
    // A field that does not fit, in what then breaks off: not JSON, whichever comes first.
    assert_eq!(
        decode::<EventReceived>(b"{\"id\": 1, \"type\": ")
            .unwrap_err()
            .reason(),
        "malformed_json"
    );
    // Broken JSON inside `data`, in an envelope that is otherwise whole.
    let mut broken = serde_json::to_string(&received()).unwrap();
    broken.truncate(broken.len() - 2);
    assert_eq!(
        decode::<EventReceived>(broken.as_bytes())
            .unwrap_err()
            .reason(),
        "malformed_json"
    );

    let mut value = serde_json::to_value(received()).unwrap();
    value["version"] = 2.into();
    let bytes = serde_json::to_vec(&value).unwrap();
    assert_eq!(
        decode::<EventReceived>(&bytes).unwrap_err().reason(),
        "unknown_version"
    );

    value["version"] = 1.into();
    value["type"] = "something.else".into();
    let bytes = serde_json::to_vec(&value).unwrap();
    assert_eq!(
        decode::<EventReceived>(&bytes).unwrap_err().reason(),
        "unknown_type"
    );

    value["type"] = "event.received".into();
    value["data"]["user_ref"] = "".into();
    let bytes = serde_json::to_vec(&value).unwrap();
    assert_eq!(
        decode::<EventReceived>(&bytes).unwrap_err().reason(),
        "schema_violation"
    );
}

#[test]
fn a_child_envelope_is_the_same_on_every_redelivery_of_its_parent() {
    let parent = received();
    let data = DispatchCompleted {
        trigger_id: parent.correlation_id,
        counts: Default::default(),
        created_invitations: vec![],
    };
    let a = Envelope::child_of(&parent, "reply", data.clone());
    let b = Envelope::child_of(&parent, "reply", data);
    assert_eq!(a.id, b.id);
    assert_eq!(a.correlation_id, parent.correlation_id);
    assert_eq!(a.kind, "dispatch.completed");
}

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto-schemas/envelopes")
}

/// Run with `BECKON_BLESS_SCHEMAS=1` (`make schemas`) to rewrite the committed schemas.
#[test]
fn committed_envelope_schemas_equal_the_generated_ones_byte_for_byte() {
    let dir = schema_dir();
    let bless = std::env::var_os("BECKON_BLESS_SCHEMAS").is_some();
    for (file, schema) in all_schemas() {
        let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        let path = dir.join(&file);
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} is missing ({e}); run `make schemas`", path.display()));
        assert!(
            committed == generated,
            "{} drifted from the code; run `make schemas` and commit the result",
            path.display()
        );
    }
}

#[test]
fn emitted_envelopes_validate_against_their_schemas() {
    let env = received();
    let validator = jsonschema::validator_for(&schema_of::<EventReceived>()).unwrap();
    let value = serde_json::to_value(&env).unwrap();
    assert!(validator.is_valid(&value));
    let mut wrong = value.clone();
    wrong["version"] = 7.into();
    assert!(!validator.is_valid(&wrong));
}

#[test]
fn every_payload_type_validates_against_its_generated_schema() {
    let parent = received();
    let matched = Envelope::child_of(
        &parent,
        "matched",
        EventMatched {
            trigger_type: TriggerType::Event,
            user_ref: UserRef::parse("u1").unwrap(),
            event: LifecycleEvent::from_name("payment_failed").unwrap(),
            reply_to: Some(ReplyTo { queue: "q".into() }),
            event_data: None,
            variables: Some(object(serde_json::json!({"first_name": "Ada"}))),
            source: None,
            unmatched: Vec::<UnmatchedSurvey>::new(),
            surveys: vec![MatchedSurvey {
                survey_id: Uuid::now_v7(),
                name: "Churn".into(),
                version: 2,
                cooldown_seconds: 60,
                sample_rate: 0.5,
                sample_by: Default::default(),
                invitation_lifetime_seconds: 3600,
                skip: None,
            }],
        },
    );
    let completed = Envelope::child_of(
        &matched,
        "reply",
        DispatchCompleted {
            trigger_id: parent.correlation_id,
            counts: crate::outcome::DispatchCounts {
                matched_surveys: 1,
                created_count: 1,
                ..Default::default()
            },
            created_invitations: vec![IssuedInvitation {
                survey_id: Uuid::now_v7(),
                user_ref: UserRef::parse("u1").unwrap(),
                link: CarriedLink::Sealed {
                    magic_link_sealed: "c2VhbGVk".into(),
                },
                expires_at: OffsetDateTime::now_utc(),
            }],
        },
    );
    let check = |schema: serde_json::Value, value: serde_json::Value| {
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
    };
    check(
        schema_of::<EventReceived>(),
        serde_json::to_value(&parent).unwrap(),
    );
    check(
        schema_of::<EventMatched>(),
        serde_json::to_value(&matched).unwrap(),
    );
    check(
        schema_of::<DispatchCompleted>(),
        serde_json::to_value(&completed).unwrap(),
    );
}

#[test]
fn trigger_types_round_trip_through_their_names() {
    for t in [
        TriggerType::Dispatch,
        TriggerType::Event,
        TriggerType::Scheduled,
    ] {
        assert_eq!(TriggerType::parse(t.as_str()), Some(t));
        assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
    }
    assert_eq!(TriggerType::parse("nope"), None);
}

/// Envelopes queued before `variables` and `source` existed (an upgrade with messages in the
/// queues, a dead letter replayed later) still decode, with neither.
#[test]
fn envelopes_queued_before_variables_and_source_existed_still_decode() {
    let ids = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let envelope = |kind: &str, data: serde_json::Value| {
        serde_json::to_vec(&serde_json::json!({
            "id": ids.0, "type": kind, "version": 1, "occurred_at": "2026-11-23T10:00:00Z",
            "org_id": ids.1, "project_id": ids.2, "correlation_id": ids.3, "data": data
        }))
        .unwrap()
    };
    let received = decode::<EventReceived>(&envelope(
        "event.received",
        serde_json::json!({"trigger_type": "event", "user_ref": "u1", "event": "trial_expired",
                           "reply_to": null, "event_data": {"plan": "pro"}}),
    ))
    .unwrap();
    assert_eq!(
        (received.data.variables, received.data.source),
        (None, None)
    );
    let matched = decode::<EventMatched>(&envelope(
        "event.matched",
        serde_json::json!({"trigger_type": "event", "user_ref": "u1", "event": "trial_expired",
                           "reply_to": null, "surveys": []}),
    ))
    .unwrap();
    assert_eq!((matched.data.variables, matched.data.source), (None, None));
    let created = decode::<InvitationCreated>(&envelope(
        "invitation.created",
        serde_json::json!({
            "invitation": {"id": ids.0, "magic_link_sealed": "c2VhbGVk",
                           "expires_at": "2026-12-23T10:00:00Z"},
            "survey": {"id": ids.0, "name": "Churn", "version": 1},
            "user": {"user_ref": "u1", "email": null, "name": null, "attributes": {}},
            "trigger": {"id": ids.3, "trigger_type": "event", "event": "trial_expired",
                        "parameters": null}
        }),
    ))
    .unwrap();
    assert_eq!(
        (created.data.trigger.variables, created.data.trigger.source),
        (None, None)
    );
}

/// In an announcement, `variables` and `source` are always there: `null` when not given.
#[test]
fn an_announcement_shows_variables_and_source_null_when_not_given() {
    let trigger = TriggerDetails {
        id: Uuid::now_v7(),
        trigger_type: TriggerType::Dispatch,
        event: LifecycleEvent::TrialExpired,
        parameters: None,
        variables: None,
        source: Some(object(serde_json::json!({"type": "cron"}))),
    };
    let value = serde_json::to_value(&trigger).unwrap();
    assert_eq!(value["variables"], serde_json::Value::Null);
    assert!(value.as_object().unwrap().contains_key("variables"));
    assert_eq!(value["source"], serde_json::json!({"type": "cron"}));
}

#[test]
fn a_matched_survey_carries_sample_by_only_when_it_is_not_the_default() {
    let survey = |sample_by| MatchedSurvey {
        survey_id: Uuid::now_v7(),
        name: "Churn".into(),
        version: 1,
        cooldown_seconds: 0,
        sample_rate: 0.5,
        sample_by,
        invitation_lifetime_seconds: 3600,
        skip: None,
    };
    for (sample_by, written) in [
        (crate::survey::SampleBy::Event, None),
        (crate::survey::SampleBy::User, Some("user")),
    ] {
        let sent = survey(sample_by);
        let value = serde_json::to_value(&sent).unwrap();
        assert_eq!(
            value.get("sample_by").and_then(|v| v.as_str()),
            written,
            "{value}"
        );
        let read: MatchedSurvey = serde_json::from_value(value).unwrap();
        assert_eq!(read, sent);
    }
}
