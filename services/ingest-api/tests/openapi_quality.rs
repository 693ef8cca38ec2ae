//! The spec is good enough to generate clients from: every operation has a unique, stable
//! id; ids and times say `uuid` and `date-time`; objects are typed (a free-form map says so
//! with `additionalProperties`); every answer is described; errors are the one error shape;
//! every request body has an example; a question's schema is a tagged union that real
//! questions validate against.

use beckon_domain::LifecycleEvent;
use beckon_domain::event::PREDEFINED;
use beckon_domain::survey::{Question, QuestionKind};
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn spec() -> Value {
    serde_json::from_str(ingest_api::openapi::spec()).unwrap()
}

fn operations(spec: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            out.push((method.to_uppercase(), path.clone(), op));
        }
    }
    out
}

/// Every schema node under `node`, with where it is.
fn walk<'a>(node: &'a Value, at: String, out: &mut Vec<(String, &'a Value)>) {
    match node {
        Value::Object(map) => {
            out.push((at.clone(), node));
            // Examples are values, not schemas.
            for (k, v) in map
                .iter()
                .filter(|(k, _)| *k != "example" && *k != "examples")
            {
                walk(v, format!("{at}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn operation_ids_are_unique_and_camel_case() {
    let spec = spec();
    let mut seen = BTreeMap::new();
    for (method, path, op) in operations(&spec) {
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(
            id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && id.chars().all(|c| c.is_ascii_alphanumeric()),
            "{method} {path}: operationId {id} is not camelCase"
        );
        if let Some(other) = seen.insert(id.to_owned(), format!("{method} {path}")) {
            panic!("operationId {id} is used by {other} and {method} {path}");
        }
    }
}

#[test]
fn ids_and_times_have_their_formats_and_objects_their_types() {
    let spec = spec();
    let mut nodes = Vec::new();
    walk(&spec, String::new(), &mut nodes);
    let mut wrong = Vec::new();
    for (at, node) in nodes {
        let name = at.rsplit('/').next().unwrap_or_default();
        let in_properties = at.contains("/properties/");
        let types: Vec<&str> = match &node["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => continue,
        };
        if types.contains(&"string") && in_properties {
            // Survey-defined ids (`question_id`, a question's `id`) and your own ids
            // (`contact_external_id`, `user_ref`) are yours to choose, and a request id may be
            // a gateway's.
            let ours = (name == "id" && !at.contains("/Question")) || name.ends_with("_id");
            let yours = ["question_id", "contact_external_id", "request_id"].contains(&name);
            if ours && !yours && node["format"] != "uuid" {
                wrong.push(format!("{at}: an id without format uuid"));
            }
            if (name.ends_with("_at") || name == "scheduled_for") && node["format"] != "date-time" {
                wrong.push(format!("{at}: a time without format date-time"));
            }
        }
        if types.contains(&"object")
            && node.get("properties").is_none()
            && node.get("additionalProperties").is_none()
        {
            wrong.push(format!(
                "{at}: an object with neither properties nor additionalProperties"
            ));
        }
    }
    for (method, path, op) in operations(&spec) {
        for param in op["parameters"].as_array().into_iter().flatten() {
            let name = param["name"].as_str().unwrap();
            if param["in"] == "path" && name.ends_with("_id") && name != "question_id" {
                assert_eq!(param["schema"]["format"], "uuid", "{method} {path}: {name}");
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_answer_is_described_and_every_error_is_the_error_shape() {
    let spec = spec();
    for (method, path, op) in operations(&spec) {
        for (status, response) in op["responses"].as_object().unwrap() {
            assert!(
                response["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{method} {path} {status} has no description"
            );
            assert!(
                response["headers"].get("X-Request-Id").is_some(),
                "{method} {path} {status} does not document X-Request-Id"
            );
            if status.starts_with('4') || status.starts_with('5') {
                let content = &response["content"];
                let json = &content["application/json"]["schema"]["$ref"];
                assert!(
                    json == "#/components/schemas/ErrorBody" || content.get("text/html").is_some(),
                    "{method} {path} {status} is not an ErrorBody"
                );
            }
            let by_token = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            if by_token {
                assert!(
                    op["responses"].get("403").is_some(),
                    "{method} {path} takes a token but does not document 403 insufficient_scope"
                );
            }
            if status == "201" {
                assert!(
                    response["headers"].get("Location").is_some(),
                    "{method} {path} answers 201 without documenting Location"
                );
            }
        }
    }
}

#[test]
fn every_request_body_has_an_example() {
    let spec = spec();
    let mut missing = Vec::new();
    for (method, path, op) in operations(&spec) {
        if let Some(content) = op["requestBody"]["content"].as_object() {
            for (media, body) in content {
                if body.get("example").is_none() && body.get("examples").is_none() {
                    missing.push(format!("{method} {path} ({media})"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "no example:\n{}", missing.join("\n"));
}

#[test]
fn every_request_example_is_valid_under_its_own_schema() {
    let spec = spec();
    for (method, path, op) in operations(&spec) {
        let Some(body) = op["requestBody"]["content"].get("application/json") else {
            continue;
        };
        let schema = json!({
            "allOf": [body["schema"]],
            "components": spec["components"],
        });
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&body["example"])
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{method} {path}: {errors:?}");
    }
}

#[test]
fn questions_of_every_kind_validate_against_the_question_schema() {
    let spec = spec();
    let schema = json!({
        "$ref": "#/components/schemas/Question",
        "components": spec["components"],
    });
    let validator = jsonschema::validator_for(&schema).unwrap();
    let options = vec!["Too expensive".to_owned(), "Missing a feature".to_owned()];
    let kinds = [
        QuestionKind::Nps,
        QuestionKind::Rating,
        QuestionKind::Mcq {
            options: options.clone(),
        },
        QuestionKind::Checkbox { options },
        QuestionKind::Text,
    ];
    for kind in kinds {
        let question = Question {
            id: "q1".into(),
            title: "Why?".into(),
            required: true,
            tags: vec!["pricing".into()],
            kind,
        };
        let value = serde_json::to_value(&question).unwrap();
        assert!(validator.is_valid(&value), "{value} does not validate");
        // And the schema is no catch-all: a kind it does not know is refused.
        let mut unknown = value.clone();
        unknown["type"] = "slider".into();
        assert!(!validator.is_valid(&unknown), "{unknown} validates");
    }
    assert!(
        spec["components"]["schemas"]["Question"]
            .get("allOf")
            .is_none(),
        "a question is a tagged union, not allOf over a union"
    );
}

#[test]
fn every_lifecycle_event_validates_against_the_event_schema_and_nothing_else_does() {
    let spec = spec();
    let schema = json!({
        "$ref": "#/components/schemas/LifecycleEvent",
        "components": spec["components"],
    });
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut events: Vec<LifecycleEvent> = PREDEFINED.iter().map(|(e, _)| e.clone()).collect();
    events.push(LifecycleEvent::from_name("payment_failed").unwrap());
    for event in &events {
        let value = serde_json::to_value(event).unwrap();
        assert!(validator.is_valid(&value), "{value} does not validate");
    }
    let names: Vec<&str> = PREDEFINED.iter().map(|(_, n)| *n).collect();
    assert_eq!(
        spec["components"]["schemas"]["PredefinedEvent"]["enum"],
        json!(names),
        "the predefined events documented are the ones there are"
    );
    for wrong in [
        json!("trial_expird"),
        json!({"custom": ""}),
        json!({"custom": "x", "other": 1}),
        json!({"custom": "x".repeat(129)}),
    ] {
        assert!(!validator.is_valid(&wrong), "{wrong} validates");
    }
}

/// The schema `node` points at, `$ref`s followed and `allOf`s merged.
fn resolve(spec: &Value, node: &Value) -> Value {
    if let Some(r) = node["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap();
        return resolve(spec, &spec["components"]["schemas"][name]);
    }
    if let Some(parts) = node["allOf"].as_array() {
        let mut merged = json!({"type": "object", "properties": {}});
        for part in parts {
            let part = resolve(spec, part);
            if let Some(props) = part["properties"].as_object() {
                for (k, v) in props {
                    merged["properties"][k] = v.clone();
                }
            }
        }
        return merged;
    }
    node.clone()
}

/// Fields of `example` its schema does not have, anywhere inside it.
fn unknown_fields(spec: &Value, schema: &Value, example: &Value, at: &str, out: &mut Vec<String>) {
    let schema = resolve(spec, schema);
    match example {
        Value::Object(fields) => {
            let Some(props) = schema["properties"].as_object() else {
                return; // a free-form map, or a union: validation covers it
            };
            for (k, v) in fields {
                match props.get(k) {
                    Some(field) => unknown_fields(spec, field, v, &format!("{at}/{k}"), out),
                    None => out.push(format!("{at}/{k}")),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                unknown_fields(spec, &schema["items"], item, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_json_answer_has_an_example_that_is_valid_and_names_only_real_fields() {
    let spec = spec();
    for (method, path, op) in operations(&spec) {
        for (status, response) in op["responses"].as_object().unwrap() {
            let Some(body) = response["content"].get("application/json") else {
                continue;
            };
            if !status.starts_with('2') {
                continue;
            }
            let example = body
                .get("example")
                .unwrap_or_else(|| panic!("{method} {path} {status} has no example"));
            let schema = json!({"allOf": [body["schema"]], "components": spec["components"]});
            let validator = jsonschema::validator_for(&schema).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(example)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{method} {path} {status}: {errors:?}");
            let mut unknown = Vec::new();
            unknown_fields(&spec, &body["schema"], example, "", &mut unknown);
            assert!(
                unknown.is_empty(),
                "{method} {path} {status}: unknown {unknown:?}"
            );
        }
    }
}
