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
        },
    )
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
            surveys: vec![MatchedSurvey {
                survey_id: Uuid::now_v7(),
                name: "Churn".into(),
                version: 2,
                cooldown_seconds: 60,
                sample_rate: 0.5,
                invitation_lifetime_seconds: 3600,
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
