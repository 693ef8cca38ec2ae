//! Property tests: whatever bytes arrive, the parsers answer with a value or an error and never
//! panic. Inputs are valid envelopes and request values mutated by a seeded generator, byte by
//! byte and node by node, so a failure names the seed that reproduces it.

use beckon_domain::answer;
use beckon_domain::envelope::{
    self, DispatchCompleted, Envelope, EventMatched, EventReceived, InvitationCreated,
    MatchedSurvey, Payload, ReplyTo, ResponseProgressed, TriggerType,
};
use beckon_domain::survey::{self, Question, QuestionKind};
use beckon_domain::{LifecycleEvent, UserRef};
use serde_json::{Value, json};
use uuid::Uuid;

/// xorshift64*: small, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const TYPES: [&str; 6] = [
    "event.received",
    "event.matched",
    "dispatch.completed",
    "invitation.created",
    "response.progressed",
    "no.such.type",
];

/// Values that break parsers: extremes, wrong types, odd strings, deep nesting.
fn nasty(rng: &mut Rng) -> Value {
    let deep = |n: usize| -> Value {
        let text = format!("{}{}", "[".repeat(n), "]".repeat(n));
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    match rng.below(16) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(u64::MAX),
        4 => json!(i64::MIN),
        5 => json!(1e308),
        6 => json!(0.5),
        7 => json!(""),
        8 => json!("\u{0}\u{202e}\u{fffd}é😀"),
        9 => json!("x".repeat(10_000)),
        10 => json!("00000000-0000-0000-0000-000000000000"),
        11 => json!("2026-13-45T99:99:99Z"),
        12 => json!([]),
        13 => json!({}),
        14 => deep(100),
        _ => json!(*rng.pick(&TYPES)),
    }
}

/// Replaces, removes or adds one node somewhere in `value`.
fn mutate_tree(rng: &mut Rng, value: &mut Value, depth: usize) {
    match value {
        Value::Object(map) if !map.is_empty() && (depth < 6 && rng.below(3) != 0) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = rng.pick(&keys).clone();
            match rng.below(6) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    map.insert(format!("extra_{}", rng.below(100)), nasty(rng));
                }
                2 => {
                    map.insert(key, nasty(rng));
                }
                _ => mutate_tree(rng, map.get_mut(&key).expect("a key"), depth + 1),
            }
        }
        Value::Array(items) if !items.is_empty() && rng.below(3) != 0 => {
            let i = rng.below(items.len());
            match rng.below(4) {
                0 => {
                    items.remove(i);
                }
                1 => {
                    let copy = items[i].clone();
                    items.push(copy);
                }
                _ => mutate_tree(rng, &mut items[i], depth + 1),
            }
        }
        other => *other = nasty(rng),
    }
}

/// Flips, drops, repeats or inserts bytes.
fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>) {
    const TOKENS: [&[u8]; 10] = [
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"",
        b"\\u0000",
        b"\\ud800",
        b"1e999",
        b"-",
        b"\xff\xfe",
    ];
    for _ in 0..1 + rng.below(4) {
        if bytes.is_empty() {
            bytes.extend_from_slice(TOKENS[rng.below(TOKENS.len())]);
            continue;
        }
        let at = rng.below(bytes.len());
        match rng.below(5) {
            0 => bytes[at] ^= 1 << rng.below(8),
            1 => {
                let end = (at + 1 + rng.below(16)).min(bytes.len());
                bytes.drain(at..end);
            }
            2 => {
                let end = (at + 1 + rng.below(32)).min(bytes.len());
                let piece = bytes[at..end].to_vec();
                bytes.splice(at..at, piece);
            }
            3 => bytes.truncate(at),
            _ => {
                let token = TOKENS[rng.below(TOKENS.len())];
                bytes.splice(at..at, token.iter().copied());
            }
        }
    }
}

fn seeds() -> Vec<Value> {
    let received = Envelope::new(
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        EventReceived {
            trigger_type: TriggerType::Event,
            user_ref: UserRef::parse("user-1").unwrap(),
            event: LifecycleEvent::from_name("payment_failed").unwrap(),
            reply_to: Some(ReplyTo {
                queue: "replies".into(),
            }),
            survey_id: None,
            event_data: Some(json!({"plan": "pro", "seats": [1, 2]})),
            variables: json!({"first_name": "Ada"}).as_object().cloned(),
            source: json!({"type": "api", "ip": "192.0.2.7"})
                .as_object()
                .cloned(),
        },
    );
    let matched = Envelope::child_of(
        &received,
        "matched",
        EventMatched {
            trigger_type: TriggerType::Dispatch,
            user_ref: UserRef::parse("user-1").unwrap(),
            event: LifecycleEvent::TrialExpired,
            reply_to: None,
            event_data: None,
            variables: None,
            source: json!({"type": "cron"}).as_object().cloned(),
            unmatched: Vec::<beckon_domain::envelope::UnmatchedSurvey>::new(),
            surveys: vec![MatchedSurvey {
                survey_id: Uuid::now_v7(),
                name: "Churn".into(),
                version: 1,
                cooldown_seconds: 60,
                sample_rate: 1.0,
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
            trigger_id: received.correlation_id,
            counts: Default::default(),
            created_invitations: Vec::new(),
        },
    );
    vec![
        serde_json::to_value(&received).unwrap(),
        serde_json::to_value(&matched).unwrap(),
        serde_json::to_value(&completed).unwrap(),
    ]
}

/// Decodes as `T`; what decodes must survive a round trip unchanged. Whether it decoded.
fn decode_as<T: Payload + PartialEq + std::fmt::Debug>(bytes: &[u8]) -> bool {
    match envelope::decode::<T>(bytes) {
        Ok(env) => {
            let again = envelope::decode::<T>(&env.to_json()).expect("re-encoded decodes");
            assert_eq!(again, env);
            true
        }
        Err(err) => {
            assert!(matches!(
                err.reason(),
                "malformed_json" | "schema_violation" | "unknown_type" | "unknown_version"
            ));
            false
        }
    }
}

/// How many of the payload types `bytes` decodes as.
fn decode_as_every_type(bytes: &[u8]) -> usize {
    [
        decode_as::<EventReceived>(bytes),
        decode_as::<EventMatched>(bytes),
        decode_as::<DispatchCompleted>(bytes),
        decode_as::<InvitationCreated>(bytes),
        decode_as::<ResponseProgressed>(bytes),
    ]
    .into_iter()
    .filter(|ok| *ok)
    .count()
}

#[test]
fn mutated_envelopes_decode_or_fail_with_a_reason_and_never_panic() {
    let seeds = seeds();
    for seed in &seeds {
        assert_eq!(decode_as_every_type(&serde_json::to_vec(seed).unwrap()), 1);
    }
    let (mut decoded, mut refused) = (0, 0);
    for case in 0..3_000u64 {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ case.wrapping_mul(0x100_0000_01B3));
        let mut value = rng.pick(&seeds).clone();
        for _ in 0..rng.below(3) {
            mutate_tree(&mut rng, &mut value, 0);
        }
        if let Some(object) = value.as_object_mut()
            && rng.below(4) == 0
        {
            object.insert("type".into(), json!(*rng.pick(&TYPES)));
        }
        let mut bytes = serde_json::to_vec(&value).unwrap();
        match decode_as_every_type(&bytes) {
            0 => refused += 1,
            _ => decoded += 1,
        }
        mutate_bytes(&mut rng, &mut bytes);
        let outcome = std::panic::catch_unwind(|| decode_as_every_type(&bytes));
        assert!(
            outcome.is_ok(),
            "case {case} panicked on {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
    // The mutations reach both sides: some still decode (an extra field, a changed value
    // that fits), most do not.
    assert!(
        decoded > 300 && refused > 1_000,
        "{decoded} decoded, {refused} refused"
    );
}

#[test]
fn mutated_questions_and_answers_validate_or_fail_and_never_panic() {
    let question = json!({"id": "q", "title": "How likely?", "required": true, "type": "nps"});
    let questions = [
        question.clone(),
        json!({"id": "r", "title": "Rate", "type": "rating"}),
        json!({"id": "m", "title": "Pick", "type": "mcq", "options": ["a", "b"]}),
        json!({"id": "c", "title": "Tick", "type": "checkbox", "options": ["a", "b", "c"]}),
        json!({"id": "t", "title": "Say", "type": "text"}),
    ];
    for case in 0..3_000u64 {
        let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ case.wrapping_mul(0x9E37_79B9));
        let mut list = Value::Array(questions.to_vec());
        mutate_tree(&mut rng, &mut list, 0);
        if let Ok(parsed) = serde_json::from_value::<Vec<Question>>(list) {
            let _ = survey::validate_questions(&parsed);
            for q in &parsed {
                let _ = survey::validate_name(&q.title);
                for _ in 0..4 {
                    let answer = nasty(&mut rng);
                    if let Ok(stored) = answer::validate(q, &answer) {
                        // What is accepted is accepted again as stored.
                        assert_eq!(answer::validate(q, &stored).as_ref(), Ok(&stored), "{q:?}");
                    }
                }
                if let QuestionKind::Mcq { options } | QuestionKind::Checkbox { options } = &q.kind
                    && let Some(first) = options.first()
                {
                    let _ = answer::validate(q, &json!(first));
                    let _ = answer::validate(q, &json!([first, first]));
                }
            }
        }
        let raw = nasty(&mut rng).to_string();
        let _ = UserRef::parse(&raw);
        let _ = LifecycleEvent::from_name(&raw);
        let _ = LifecycleEvent::from_key(&raw);
    }
}
