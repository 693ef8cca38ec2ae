use super::*;
use serde_json::json;

fn parse(value: Value) -> Condition {
    let condition: Condition = serde_json::from_value(value).unwrap();
    condition.validate().unwrap();
    condition
}

fn now() -> OffsetDateTime {
    time::macros::datetime!(2026-12-02 12:00 UTC)
}

fn custom() -> Value {
    json!({"country": "FR", "seats": 12, "beta": true, "address": {"city": "Lyon"},
           "renews_at": "2026-12-20T00:00:00Z", "tags": ["vip", "eu"], "gone": null})
}

fn groups() -> Vec<String> {
    vec!["plan-enterprise".to_owned()]
}

/// Whether `condition` holds for a user with [`custom`] attributes and an event with `data`.
fn check(condition: Value, data: Value) -> Result<(), String> {
    check_in(condition, data, &Segments::new())
}

/// [`check`], with these segments.
fn check_in(condition: Value, data: Value, segments: &Segments) -> Result<(), String> {
    let custom = custom();
    let groups = groups();
    let subject = Subject {
        now: now(),
        event_data: Some(&data),
        user: Some(UserFacts {
            email: Some("ada@example.com"),
            name: None,
            groups: &groups,
            custom_fields: &custom,
            trial_ends_at: Some(time::macros::datetime!(2026-12-04 12:00 UTC)),
            created_at: time::macros::datetime!(2026-11-01 00:00 UTC),
        }),
    };
    parse(condition).evaluate(&subject, segments)
}

fn holds(condition: Value) -> bool {
    check(
        condition,
        json!({"plan": "pro", "amount": 49.5, "cart": {"items": 3}}),
    )
    .is_ok()
}

#[test]
fn each_operator_on_event_properties() {
    assert!(holds(
        json!({"eq": {"field": "event_data.plan", "value": "pro"}})
    ));
    assert!(!holds(
        json!({"eq": {"field": "event_data.plan", "value": "free"}})
    ));
    assert!(holds(
        json!({"ne": {"field": "event_data.plan", "value": "free"}})
    ));
    assert!(!holds(
        json!({"ne": {"field": "event_data.missing", "value": "free"}})
    ));
    assert!(holds(
        json!({"in": {"field": "event_data.plan", "value": ["team", "pro"]}})
    ));
    assert!(!holds(
        json!({"in": {"field": "event_data.plan", "value": ["team"]}})
    ));
    assert!(holds(
        json!({"contains": {"field": "event_data.plan", "value": "r"}})
    ));
    assert!(holds(
        json!({"starts_with": {"field": "event_data.plan", "value": "pr"}})
    ));
    assert!(!holds(
        json!({"starts_with": {"field": "event_data.amount", "value": "4"}})
    ));
    assert!(holds(
        json!({"gt": {"field": "event_data.amount", "value": 49}})
    ));
    assert!(!holds(
        json!({"gt": {"field": "event_data.amount", "value": 49.5}})
    ));
    assert!(holds(
        json!({"lt": {"field": "event_data.cart.items", "value": 4}})
    ));
    assert!(holds(
        json!({"eq": {"field": "event_data.cart.items", "value": 3.0}})
    ));
    assert!(!holds(
        json!({"eq": {"field": "event_data.cart.items", "value": "3"}})
    ));
    // Integers compare exactly, beyond what a float holds.
    let id = |n: u64| json!({"id": n});
    let big = json!({"eq": {"field": "event_data.id", "value": 9_007_199_254_740_993_u64}});
    assert!(check(big.clone(), id(9_007_199_254_740_992)).is_err());
    assert!(check(big, id(9_007_199_254_740_993)).is_ok());
    assert!(holds(json!({"exists": {"field": "event_data.cart"}})));
    assert!(!holds(
        json!({"exists": {"field": "event_data.cart.total"}})
    ));
    let at = |raw: &str| json!({"at": raw});
    assert!(
        check(
            json!({"before": {"field": "event_data.at", "value": "now"}}),
            at("2026-12-01T00:00:00Z")
        )
        .is_ok()
    );
    assert!(
        check(
            json!({"after": {"field": "event_data.at", "value": "now-1d"}}),
            at("2026-12-01T00:00:00Z")
        )
        .is_err()
    );
    // Not a time, or a time out of range: false, not a failure.
    assert!(
        check(
            json!({"before": {"field": "event_data.at", "value": "now"}}),
            at("yesterday")
        )
        .is_err()
    );
    assert!(
        check(
            json!({"before": {"field": "event_data.at", "value": "now"}}),
            at("9999-12-31T23:59:59-23:59")
        )
        .is_err()
    );
}

#[test]
fn each_operator_on_user_fields() {
    assert!(holds(
        json!({"eq": {"field": "email", "value": "ada@example.com"}})
    ));
    assert!(!holds(json!({"exists": {"field": "name"}})));
    assert!(!holds(json!({"eq": {"field": "name", "value": ""}})));
    assert!(holds(
        json!({"contains": {"field": "groups", "value": "plan-enterprise"}})
    ));
    assert!(holds(
        json!({"eq": {"field": "custom_fields.country", "value": "FR"}})
    ));
    assert!(holds(
        json!({"in": {"field": "custom_fields.country", "value": ["DE", "FR"]}})
    ));
    assert!(holds(
        json!({"eq": {"field": "custom_fields.address.city", "value": "Lyon"}})
    ));
    assert!(holds(
        json!({"eq": {"field": "custom_fields.beta", "value": true}})
    ));
    assert!(holds(
        json!({"gt": {"field": "custom_fields.seats", "value": 10}})
    ));
    assert!(holds(
        json!({"contains": {"field": "custom_fields.tags", "value": "vip"}})
    ));
    assert!(!holds(json!({"exists": {"field": "custom_fields.gone"}})));
    assert!(holds(
        json!({"before": {"field": "trial_ends_at", "value": "now+3d"}})
    ));
    assert!(!holds(
        json!({"before": {"field": "trial_ends_at", "value": "now+1d"}})
    ));
    assert!(holds(
        json!({"after": {"field": "trial_ends_at", "value": "now"}})
    ));
    assert!(holds(
        json!({"before": {"field": "created_at", "value": "now-14d"}})
    ));
    assert!(holds(
        json!({"after": {"field": "created_at", "value": "2026-10-31T23:00:00Z"}})
    ));
    assert!(holds(
        json!({"after": {"field": "custom_fields.renews_at", "value": "now+2w"}})
    ));
}

#[test]
fn all_any_and_not_say_which_clause_was_false() {
    let plan = json!({"eq": {"field": "event_data.plan", "value": "pro"}});
    let free = json!({"eq": {"field": "event_data.plan", "value": "free"}});
    assert_eq!(
        check(json!({"all": [plan, free]}), json!({"plan": "pro"})),
        Err("/all/1/eq".to_owned())
    );
    assert!(holds(json!({"any": [free, plan]})));
    assert_eq!(
        check(json!({"any": [free, free]}), json!({"plan": "pro"})),
        Err("/any".to_owned())
    );
    assert!(holds(json!({"not": free})));
    assert_eq!(
        check(json!({"not": plan}), json!({"plan": "pro"})),
        Err("/not".to_owned())
    );
    assert_eq!(
        check(
            json!({"all": [{"any": [plan]}, {"not": {"all": [plan]}}]}),
            json!({"plan": "pro"})
        ),
        Err("/all/1/not".to_owned())
    );
}

#[test]
fn the_deepest_false_clause_is_pointed_at_whole() {
    let plan = json!({"eq": {"field": "event_data.plan", "value": "pro"}});
    let free = json!({"eq": {"field": "event_data.plan", "value": "free"}});
    let nest = |depth: usize| {
        let mut condition = json!({"all": [plan.clone(), free.clone()]});
        for _ in 1..depth {
            condition = json!({"all": [condition]});
        }
        condition
    };
    let deepest = nest(MAX_DEPTH);
    assert!(parse(deepest.clone()).validate().is_ok());
    assert_eq!(
        check(deepest, json!({"plan": "pro"})),
        Err(format!("{}/all/1/eq", "/all/0".repeat(MAX_DEPTH - 1)))
    );
    // Stored deeper than allowed (by hand): still pointed at from the root.
    let deeper: Condition = serde_json::from_value(nest(MAX_DEPTH + 2)).unwrap();
    assert!(deeper.validate().is_err());
    let data = json!({"plan": "pro"});
    let subject = Subject {
        now: now(),
        event_data: Some(&data),
        user: None,
    };
    assert_eq!(
        deeper.evaluate(&subject, &Segments::new()),
        Err(format!("{}/all/1/eq", "/all/0".repeat(MAX_DEPTH + 1)))
    );
}

#[test]
fn without_a_user_every_user_comparison_is_false() {
    let condition = parse(json!({"not": {"exists": {"field": "email"}}}));
    let subject = Subject {
        now: now(),
        event_data: None,
        user: None,
    };
    assert_eq!(condition.evaluate(&subject, &Segments::new()), Ok(()));
    assert!(condition.reads_user());
    assert!(!parse(json!({"exists": {"field": "event_data.x"}})).reads_user());
}

#[test]
fn malformed_conditions_are_refused_at_the_offending_part() {
    let invalid = |value: Value| -> String {
        match serde_json::from_value::<Condition>(value) {
            Err(e) => format!("parse: {e}"),
            Ok(c) => c
                .validate()
                .map(|()| "valid".to_owned())
                .unwrap_or_else(|e| e.pointer),
        }
    };
    assert!(invalid(json!({"eq": {"field": "plan", "value": "x"}})).starts_with("parse"));
    assert!(invalid(json!({"eq": {"field": "event_data.", "value": "x"}})).starts_with("parse"));
    assert!(
        invalid(json!({"eq": {"field": "event_data.a", "value": {"x": 1}}})).starts_with("parse")
    );
    assert!(
        invalid(json!({"eq": {"field": "event_data.a", "value": "x", "extra": 1}}))
            .starts_with("parse")
    );
    assert!(invalid(json!({"eq": {"field": "event_data.a"}})).starts_with("parse"));
    assert!(
        invalid(json!({"matches": {"field": "event_data.a", "value": "x"}})).starts_with("parse")
    );
    assert!(invalid(json!({"eq": {"field": "event_data.a", "value": "x"}, "ne": {"field": "event_data.a", "value": "x"}})).starts_with("parse"));
    assert!(
        invalid(json!({"before": {"field": "created_at", "value": "now+3y"}})).starts_with("parse")
    );
    assert!(
        invalid(json!({"before": {"field": "created_at", "value": "now+9999w"}}))
            .starts_with("parse")
    );
    for odd in [
        "now€3d", "now+", "now-d", "now+3", "now+-3d", "now 3d", "nowish",
    ] {
        assert!(
            invalid(json!({"before": {"field": "created_at", "value": odd}})).starts_with("parse"),
            "{odd}"
        );
    }
    assert_eq!(invalid(json!({"all": []})), "/all");
    assert_eq!(
        invalid(json!({"any": [{"gt": {"field": "email", "value": 1}}]})),
        "/any/0/gt/field"
    );
    assert_eq!(
        invalid(json!({"all": [{"before": {"field": "name", "value": "now"}}]})),
        "/all/0/before/field"
    );
    assert_eq!(
        invalid(json!({"in": {"field": "email", "value": []}})),
        "/in/value"
    );
    assert_eq!(
        invalid(json!({"starts_with": {"field": "email", "value": ""}})),
        "/starts_with/value"
    );
    for op in ["eq", "ne", "starts_with"] {
        assert_eq!(
            invalid(json!({op: {"field": "groups", "value": "internal"}})),
            format!("/{op}/field")
        );
    }
    assert_eq!(
        invalid(json!({"in": {"field": "groups", "value": ["internal"]}})),
        "/in/field"
    );
    let mut deep = json!({"exists": {"field": "email"}});
    for _ in 0..MAX_DEPTH + 1 {
        deep = json!({"not": deep});
    }
    assert_eq!(invalid(deep).matches("/not").count(), MAX_DEPTH + 1);
    let many: Vec<Value> = (0..MAX_CHILDREN)
        .map(|_| json!({"all": [{"exists": {"field": "email"}}, {"exists": {"field": "name"}}]}))
        .collect();
    assert!(invalid(json!({"all": many})).starts_with("/all/"));
    let key = "k".repeat(MAX_KEY_LEN + 1);
    assert!(
        invalid(json!({"exists": {"field": format!("custom_fields.{key}")}})).starts_with("parse")
    );
    assert!(
        invalid(json!({"exists": {"field": "custom_fields.a.b.c.d.e.f"}})).starts_with("parse")
    );
}

#[test]
fn conditions_read_back_as_they_were_written() {
    let raw = json!({"all": [
        {"eq": {"field": "event_data.plan", "value": "pro"}},
        {"in": {"field": "custom_fields.country", "value": ["FR", 3, true]}},
        {"before": {"field": "trial_ends_at", "value": "now+3d"}},
        {"after": {"field": "created_at", "value": "now-90m"}},
        {"after": {"field": "created_at", "value": "2026-01-01T00:00:00Z"}},
        {"not": {"exists": {"field": "groups"}}}
    ]});
    let condition = parse(raw.clone());
    assert_eq!(serde_json::to_value(&condition).unwrap(), raw);
    let point: TimePoint = "now-14d".to_owned().try_into().unwrap();
    assert_eq!(point.resolve(now()), now() - time::Duration::weeks(2));
    assert_eq!(String::from(point), "now-14d");
}

fn segment(value: Value) -> Condition {
    let condition: Condition = serde_json::from_value(value).unwrap();
    condition.validate_segment().unwrap();
    condition
}

#[test]
fn a_segment_holds_when_its_condition_does() {
    let (fr, de) = (Uuid::now_v7(), Uuid::now_v7());
    let segments = Segments::from([
        (
            fr,
            segment(json!({"eq": {"field": "custom_fields.country", "value": "FR"}})),
        ),
        (
            de,
            segment(json!({"eq": {"field": "custom_fields.country", "value": "DE"}})),
        ),
    ]);
    let data = || json!({"plan": "pro"});
    assert_eq!(check_in(json!({"segment": fr}), data(), &segments), Ok(()));
    assert_eq!(
        check_in(json!({"segment": de}), data(), &segments),
        Err("/segment".to_owned())
    );
    assert_eq!(
        check_in(
            json!({"all": [{"eq": {"field": "event_data.plan", "value": "pro"}}, {"segment": de}]}),
            data(),
            &segments
        ),
        Err("/all/1/segment".to_owned())
    );
    assert_eq!(
        check_in(json!({"not": {"segment": de}}), data(), &segments),
        Ok(())
    );
    // One that is not there is false.
    assert_eq!(
        check_in(json!({"segment": Uuid::now_v7()}), data(), &segments),
        Err("/segment".to_owned())
    );
    assert!(parse(json!({"segment": fr})).reads_user());
}

#[test]
fn a_segment_reads_the_user_only_and_refers_to_no_segment() {
    let refused = |value: Value| {
        serde_json::from_value::<Condition>(value)
            .unwrap()
            .validate_segment()
            .unwrap_err()
            .pointer
    };
    assert_eq!(
        refused(
            json!({"all": [{"exists": {"field": "email"}}, {"not": {"eq": {"field": "event_data.plan", "value": "pro"}}}]})
        ),
        "/all/1/not/eq/field"
    );
    assert_eq!(
        refused(json!({"any": [{"exists": {"field": "email"}}, {"segment": Uuid::now_v7()}]})),
        "/any/1/segment"
    );
    // The survey's own rules still apply.
    assert_eq!(
        refused(json!({"gt": {"field": "email", "value": 3}})),
        "/gt/field"
    );
    segment(
        json!({"all": [{"contains": {"field": "groups", "value": "beta"}}, {"after": {"field": "created_at", "value": "now-30d"}}]}),
    );
}

#[test]
fn a_condition_refers_to_a_bounded_number_of_segments() {
    let ids: Vec<Uuid> = (0..=MAX_SEGMENTS).map(|_| Uuid::now_v7()).collect();
    let refs = |ids: &[Uuid]| -> Value {
        json!({"any": ids.iter().map(|id| json!({"segment": id})).collect::<Vec<_>>()})
    };
    let too_many: Condition = serde_json::from_value(refs(&ids)).unwrap();
    let err = too_many.validate().unwrap_err();
    assert_eq!(err.pointer, format!("/any/{MAX_SEGMENTS}/segment"));
    // The same segment twice counts once.
    let mut twice = ids[..MAX_SEGMENTS].to_vec();
    twice.push(ids[0]);
    let ok: Condition = serde_json::from_value(refs(&twice)).unwrap();
    ok.validate().unwrap();
    assert_eq!(ok.segment_refs().len(), MAX_SEGMENTS + 1);
    assert_eq!(
        ok.segment_refs()[MAX_SEGMENTS],
        (format!("/any/{MAX_SEGMENTS}/segment"), ids[0])
    );
    assert!(serde_json::from_value::<Condition>(json!({"segment": "not-a-uuid"})).is_err());
}

#[test]
fn a_time_before_1970_is_a_time() {
    let born = |at: &str| json!({"born": at});
    // Born in 1965: more than 10 years ago (520 weeks), and after 1960.
    assert_eq!(
        check(
            json!({"before": {"field": "event_data.born", "value": "now-520w"}}),
            born("1965-03-01T00:00:00Z")
        ),
        Ok(())
    );
    assert_eq!(
        check(
            json!({"after": {"field": "event_data.born", "value": "1960-01-01T00:00:00+01:00"}}),
            born("1965-03-01T00:00:00Z")
        ),
        Ok(())
    );
    assert!(
        check(
            json!({"after": {"field": "event_data.born", "value": "1960-01-01T00:00:00Z"}}),
            born("1959-12-31T23:59:59Z")
        )
        .is_err()
    );
    let written: Condition = serde_json::from_value(
        json!({"before": {"field": "custom_fields.born", "value": "1900-01-01T00:00:00Z"}}),
    )
    .unwrap();
    assert_eq!(written.validate(), Ok(()));
}

#[test]
fn a_user_in_no_group_has_no_groups() {
    let custom = custom();
    let none: Vec<String> = Vec::new();
    let subject = Subject {
        now: now(),
        event_data: None,
        user: Some(UserFacts {
            email: None,
            name: None,
            groups: &none,
            custom_fields: &custom,
            trial_ends_at: None,
            created_at: now(),
        }),
    };
    let exists = parse(json!({"exists": {"field": "groups"}}));
    assert_eq!(
        exists.evaluate(&subject, &Segments::new()),
        Err("/exists".to_owned())
    );
    let outside = parse(json!({"not": {"exists": {"field": "groups"}}}));
    assert_eq!(outside.evaluate(&subject, &Segments::new()), Ok(()));
    let member = parse(json!({"not": {"contains": {"field": "groups", "value": "internal"}}}));
    assert_eq!(member.evaluate(&subject, &Segments::new()), Ok(()));
    // A user in a group has groups.
    assert!(holds(json!({"exists": {"field": "groups"}})));
}

#[test]
fn exists_finds_a_field_exactly_when_a_comparison_reads_one() {
    let custom = json!({"a": {"b": 1}, "gone": null});
    let data = json!({"plan": "pro", "none": null});
    let some_groups = vec!["beta".to_owned()];
    let no_groups: Vec<String> = Vec::new();
    let fields = [
        "email",
        "name",
        "groups",
        "trial_ends_at",
        "created_at",
        "event_data.plan",
        "event_data.none",
        "event_data.missing",
        "custom_fields.a.b",
        "custom_fields.gone",
        "custom_fields.a.missing",
    ];
    let users = [
        None,
        Some(UserFacts {
            email: Some(""),
            name: None,
            groups: &no_groups,
            custom_fields: &custom,
            trial_ends_at: None,
            created_at: now(),
        }),
        Some(UserFacts {
            email: None,
            name: Some("Ada"),
            groups: &some_groups,
            custom_fields: &custom,
            trial_ends_at: Some(now()),
            created_at: now(),
        }),
    ];
    for user in users {
        for event_data in [None, Some(&data)] {
            let subject = Subject {
                now: now(),
                event_data,
                user,
            };
            for raw in fields {
                let field: Field = serde_json::from_value(json!(raw)).unwrap();
                assert_eq!(
                    subject.has(&field),
                    subject.read(&field).is_some(),
                    "{raw} for {user:?} and {event_data:?}"
                );
            }
        }
    }
}
