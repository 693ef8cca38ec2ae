//! What one survey's conditions may cost to evaluate once segments are in them.
//!
//! `MAX_NODES` bounds a condition to 50 operators so that matching an event costs little
//! whatever a tenant writes; the matcher (shared by every tenant) and the dry run evaluate
//! every Live survey of the project for every event. A segment is bounded the same way, and a
//! condition may refer to at most `MAX_SEGMENTS` distinct segments. So one survey should cost
//! at most its own 50 operators and those of its (at most 10) segments — not its 50 operators
//! times the segment's 50 for every reference to the same segment.

use beckon_domain::condition::{Condition, MAX_SEGMENTS, Segments, Subject, UserFacts};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// 46 `contains` on a 60 KB attribute, none of which holds, under `any`s: as many comparisons
/// as 50 operators allow, each scanning the whole attribute.
fn widest(leaf: impl Fn() -> Value) -> Value {
    let group = |n: usize| json!({"any": (0..n).map(|_| leaf()).collect::<Vec<_>>()});
    json!({"any": [group(20), group(20), group(6)]})
}

fn cheapest_of(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap()
}

#[test]
fn referring_to_one_segment_many_times_costs_about_what_referring_to_it_once_does() {
    let needle = format!("{}b", "a".repeat(499));
    let contains = || json!({"contains": {"field": "custom_fields.bio", "value": needle}});

    let body: Condition = serde_json::from_value(widest(contains)).unwrap();
    body.validate_segment().unwrap();
    let id = Uuid::now_v7();
    let segments = Segments::from([(id, body.clone())]);
    // The survey: the same segment, referred to 46 times (one distinct segment).
    let survey: Condition = serde_json::from_value(widest(|| json!({"segment": id}))).unwrap();
    survey.validate().unwrap();
    assert_eq!(survey.segment_refs().len(), 46);

    let custom = json!({"bio": "a".repeat(60_000)});
    let groups: Vec<String> = Vec::new();
    let subject = Subject {
        now: time::OffsetDateTime::now_utc(),
        event_data: None,
        user: Some(UserFacts {
            email: None,
            name: None,
            groups: &groups,
            custom_fields: &custom,
            trial_ends_at: None,
            created_at: time::OffsetDateTime::now_utc(),
        }),
    };
    // The segment's own condition, evaluated once: what a survey of 50 operators costs.
    let once = cheapest_of(5, || {
        assert!(body.evaluate(&subject, &Segments::new()).is_err());
    });
    let survey_cost = cheapest_of(3, || {
        assert!(survey.evaluate(&subject, &segments).is_err());
    });
    let ratio = survey_cost.as_secs_f64() / once.as_secs_f64();
    // Even evaluating each of MAX_SEGMENTS distinct segments once, plus the survey's own
    // operators, stays within MAX_SEGMENTS + 1 times one condition of 50 operators.
    let bound = (MAX_SEGMENTS + 1) as f64;
    assert!(
        ratio <= bound,
        "one survey referring to one segment 46 times costs {ratio:.0} times a condition of \
         50 operators ({survey_cost:?} against {once:?}); at most {bound} was expected"
    );
}
