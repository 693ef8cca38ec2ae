//! Targeting conditions: a small typed language over the event's properties and the user's
//! fields, stored with a survey's trigger and evaluated when an event is matched.
//!
//! A condition is one JSON object with one key, the operator:
//!
//! - `{"all": [c, …]}`, `{"any": [c, …]}` (1 to [`MAX_CHILDREN`] conditions) and
//!   `{"not": c}`;
//! - `{"eq" | "ne" | "contains": {"field": f, "value": v}}` with `v` a string, number or
//!   boolean; `{"in": {"field": f, "value": [v, …]}}`; `{"starts_with": {"field": f, "value":
//!   "text"}}`; `{"gt" | "lt": {"field": f, "value": number}}`; `{"exists": {"field": f}}`;
//!   `{"before" | "after": {"field": f, "value": "now-14d"}}` (a time relative to when the
//!   event is handled: `now`, `now+3d`, `now-12h`, in `s`, `m`, `h`, `d` or `w`; or an RFC 3339
//!   time).
//!
//! `{"segment": "<id>"}` holds when the user is in the project's segment of that id: a named
//! condition over user fields kept on its own (`POST /api/v1/projects/{id}/segments`), so
//! changing it changes every survey that refers to it. A segment's own condition reads user
//! fields only and refers to no segment.
//!
//! A field is `event_data.<key>[.<key>…]` (a property of the event), `email`, `name`,
//! `groups`, `custom_fields.<key>[.<key>…]` (the user's attributes), `trial_ends_at` or
//! `created_at` (when the user was first seen).
//!
//! A comparison with a field that is absent (or `null`) is false — `ne` too; `exists` asks
//! whether it is there, `not` turns any answer round. Values compare by type: `"5"` is not
//! `5`, while numbers compare as numbers (`5` is `5.0`). `contains` finds text in a string or
//! an element in a list; `before`/`after` read a field holding an RFC 3339 time.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashMap;
use time::OffsetDateTime;
use uuid::Uuid;

/// The segments a condition may refer to, by id, each with its condition.
pub type Segments = HashMap<Uuid, Condition>;

/// Most conditions an `all` or `any` may list.
pub const MAX_CHILDREN: usize = 20;
/// Most conditions (operators) one survey's condition may hold in all.
pub const MAX_NODES: usize = 50;
/// Deepest nesting of `all`, `any` and `not`.
pub const MAX_DEPTH: usize = 6;
/// Most values an `in` may list.
pub const MAX_IN_VALUES: usize = 100;
/// Longest text value, in characters.
pub const MAX_TEXT: usize = 500;
/// Most keys a field's path may have after its prefix, and the longest key.
pub const MAX_PATH_KEYS: usize = 5;
pub const MAX_KEY_LEN: usize = 100;
/// Most distinct segments one condition may refer to.
pub const MAX_SEGMENTS: usize = 10;
/// Farthest a relative time may reach from now: 10 years.
pub const MAX_RELATIVE_SECONDS: i64 = 10 * 366 * 24 * 3600;

/// A condition on the event and the user: one operator. `all`, `any` and `not` combine
/// conditions; the others compare a `field` (`event_data.<key>`, `email`, `name`, `groups`,
/// `custom_fields.<key>`, `trial_ends_at`, `created_at`) with a `value`. A comparison with an
/// absent or `null` field is false.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// Every one of these is true.
    All(Vec<Condition>),
    /// At least one of these is true.
    Any(Vec<Condition>),
    /// This is false.
    Not(Box<Condition>),
    /// The field equals the value.
    Eq(Comparison),
    /// The field is there and does not equal the value.
    Ne(Comparison),
    /// The field equals one of the values.
    In(Membership),
    /// The field (text) contains the value, or (a list) has it as an element.
    Contains(Comparison),
    /// The field is text that starts with the value.
    StartsWith(TextComparison),
    /// The field is a number greater than the value.
    Gt(NumberComparison),
    /// The field is a number less than the value.
    Lt(NumberComparison),
    /// The field is there (and not `null`).
    Exists(Presence),
    /// The field is a time before the value.
    Before(TimeComparison),
    /// The field is a time after the value.
    After(TimeComparison),
    /// The user is in the project's segment of this id.
    Segment(Uuid),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    pub field: Field,
    pub value: Scalar,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    pub field: Field,
    /// 1 to 100 values.
    pub value: Vec<Scalar>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TextComparison {
    pub field: Field,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NumberComparison {
    pub field: Field,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Presence {
    pub field: Field,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeComparison {
    pub field: Field,
    pub value: TimePoint,
}

/// What a condition reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Field {
    /// A property of the event (`event_data.plan`, `event_data.cart.total`).
    EventData(Vec<String>),
    Email,
    Name,
    /// The user's groups (a list: `contains`; `exists` when the user is in any group).
    Groups,
    /// One of the user's attributes (`custom_fields.country`).
    CustomField(Vec<String>),
    TrialEndsAt,
    /// When the user was first seen.
    CreatedAt,
}

impl Field {
    fn path(prefix: &str, keys: &[String]) -> String {
        let mut out = prefix.to_owned();
        for key in keys {
            out.push('.');
            out.push_str(key);
        }
        out
    }

    /// Whether the field may hold a time (`before`, `after`).
    fn may_hold_time(&self) -> bool {
        !matches!(self, Self::Email | Self::Name | Self::Groups)
    }

    /// Whether the field is a list, which only `contains` and `exists` can ask about.
    fn is_list(&self) -> bool {
        matches!(self, Self::Groups)
    }

    /// Whether the field may hold a number (`gt`, `lt`).
    fn may_hold_number(&self) -> bool {
        matches!(self, Self::EventData(_) | Self::CustomField(_))
    }

    /// Whether the field reads the user (and so needs the user loaded).
    pub fn reads_user(&self) -> bool {
        !matches!(self, Self::EventData(_))
    }
}

/// Why a field name names no field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a field is `event_data.<key>`, `email`, `name`, `groups`, `custom_fields.<key>`, `trial_ends_at` or `created_at` (a path of at most {MAX_PATH_KEYS} keys of 1 to {MAX_KEY_LEN} characters); not {0:?}"
)]
pub struct UnknownField(String);

impl TryFrom<String> for Field {
    type Error = UnknownField;
    fn try_from(raw: String) -> Result<Self, UnknownField> {
        let keys = |rest: &str| -> Option<Vec<String>> {
            let keys: Vec<String> = rest.split('.').map(str::to_owned).collect();
            let valid = keys.len() <= MAX_PATH_KEYS
                && keys.iter().all(|k| {
                    !k.is_empty()
                        && k.chars().count() <= MAX_KEY_LEN
                        && !k.chars().any(char::is_control)
                });
            valid.then_some(keys)
        };
        let field = match raw.as_str() {
            "email" => Some(Self::Email),
            "name" => Some(Self::Name),
            "groups" => Some(Self::Groups),
            "trial_ends_at" => Some(Self::TrialEndsAt),
            "created_at" => Some(Self::CreatedAt),
            other => {
                if let Some(rest) = other.strip_prefix("event_data.") {
                    keys(rest).map(Self::EventData)
                } else if let Some(rest) = other.strip_prefix("custom_fields.") {
                    keys(rest).map(Self::CustomField)
                } else {
                    None
                }
            }
        };
        field.ok_or_else(|| UnknownField(raw.chars().take(MAX_KEY_LEN).collect()))
    }
}

impl From<Field> for String {
    fn from(field: Field) -> Self {
        match field {
            Field::EventData(keys) => Field::path("event_data", &keys),
            Field::CustomField(keys) => Field::path("custom_fields", &keys),
            Field::Email => "email".to_owned(),
            Field::Name => "name".to_owned(),
            Field::Groups => "groups".to_owned(),
            Field::TrialEndsAt => "trial_ends_at".to_owned(),
            Field::CreatedAt => "created_at".to_owned(),
        }
    }
}

impl JsonSchema for Field {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ConditionField".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "`event_data.<key>[.<key>…]`, `email`, `name`, `groups`, `custom_fields.<key>[.<key>…]`, `trial_ends_at` or `created_at`.",
            "pattern": "^(email|name|groups|trial_ends_at|created_at|(event_data|custom_fields)(\\.[^.]+)+)$",
            "examples": ["event_data.plan", "custom_fields.country", "trial_ends_at"]
        })
    }
}

/// A string, number or boolean a field is compared with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub struct Scalar(Value);

/// Why a value is no scalar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a value is a string of at most {MAX_TEXT} characters, a number or a boolean")]
pub struct NotAScalar;

impl TryFrom<Value> for Scalar {
    type Error = NotAScalar;
    fn try_from(value: Value) -> Result<Self, NotAScalar> {
        match &value {
            Value::String(s) if s.chars().count() <= MAX_TEXT => Ok(Self(value)),
            Value::Number(_) | Value::Bool(_) => Ok(Self(value)),
            _ => Err(NotAScalar),
        }
    }
}

impl From<Scalar> for Value {
    fn from(scalar: Scalar) -> Self {
        scalar.0
    }
}

impl JsonSchema for Scalar {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ConditionValue".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": ["string", "number", "boolean"]})
    }
}

/// A time: relative to when the event is handled (`now`, `now-14d`, `now+3h`), or fixed (an
/// RFC 3339 time). It reads back as it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimePoint {
    written: String,
    at: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Instant {
    /// This many seconds from now (negative: ago).
    Relative(i64),
    At(OffsetDateTime),
}

/// An RFC 3339 time as a condition reads it, in UTC: any time that can be held, a birth date
/// before 1970 as much as a renewal next year. (Unlike a time Beckon schedules with, which
/// `timestamp::parse_utc` bounds, it is only compared, never stored or added to.)
fn parse_time(raw: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .ok()?
        .checked_to_offset(time::UtcOffset::UTC)
}

/// Why a time names no time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a time is `now`, `now+<n><unit>` or `now-<n><unit>` (unit `s`, `m`, `h`, `d` or `w`, at most 10 years away) or an RFC 3339 time"
)]
pub struct NotATime;

impl TimePoint {
    /// The time this names, when the event is handled at `now`.
    pub fn resolve(&self, now: OffsetDateTime) -> OffsetDateTime {
        match self.at {
            Instant::Relative(seconds) => now
                .checked_add(time::Duration::seconds(seconds))
                .unwrap_or(now),
            Instant::At(at) => at,
        }
    }

    fn parse(raw: &str) -> Result<Instant, NotATime> {
        let Some(rest) = raw.strip_prefix("now") else {
            return parse_time(raw).map(Instant::At).ok_or(NotATime);
        };
        if rest.is_empty() {
            return Ok(Instant::Relative(0));
        }
        let (sign, rest) = if let Some(rest) = rest.strip_prefix('+') {
            (1, rest)
        } else if let Some(rest) = rest.strip_prefix('-') {
            (-1, rest)
        } else {
            return Err(NotATime);
        };
        let unit = match rest.chars().last() {
            Some('s') => 1,
            Some('m') => 60,
            Some('h') => 3600,
            Some('d') => 86_400,
            Some('w') => 7 * 86_400,
            _ => return Err(NotATime),
        };
        let digits = &rest[..rest.len() - 1];
        if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NotATime);
        }
        let n: i64 = digits.parse().map_err(|_| NotATime)?;
        let seconds = n.checked_mul(unit).ok_or(NotATime)?;
        if seconds > MAX_RELATIVE_SECONDS {
            return Err(NotATime);
        }
        Ok(Instant::Relative(sign * seconds))
    }
}

impl TryFrom<String> for TimePoint {
    type Error = NotATime;
    fn try_from(written: String) -> Result<Self, NotATime> {
        let at = Self::parse(&written)?;
        Ok(Self { written, at })
    }
}

impl From<TimePoint> for String {
    fn from(point: TimePoint) -> Self {
        point.written
    }
}

impl JsonSchema for TimePoint {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ConditionTime".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "`now`, `now+<n><unit>`, `now-<n><unit>` (unit s, m, h, d, w) or an RFC 3339 time.",
            "examples": ["now-14d", "now+3d", "2026-12-31T00:00:00Z"]
        })
    }
}

/// The OpenAPI schema: a union of one named schema per operator (`ConditionAll`, …,
/// `ConditionAfter`), each comparison inlined; a condition nested in `all`, `any` or `not`
/// is shown as an object (client generators do not follow a union that contains itself).
#[cfg(feature = "openapi")]
mod openapi {
    use super::{Condition, MAX_CHILDREN, MAX_IN_VALUES};
    use serde_json::{Value, json};
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::Schema;

    /// Each operator: its name in the spec, its key, and its schema.
    fn operators() -> Vec<(String, Value)> {
        let field = json!({
            "type": "string",
            "description": "`event_data.<key>[.<key>…]`, `email`, `name`, `groups`, `custom_fields.<key>[.<key>…]`, `trial_ends_at` or `created_at`.",
            "pattern": "^(email|name|groups|trial_ends_at|created_at|(event_data|custom_fields)(\\.[^.]+)+)$",
            "example": "custom_fields.plan"
        });
        let scalar =
            json!({"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]});
        let time = json!({
            "type": "string",
            "description": "`now`, `now+<n><unit>`, `now-<n><unit>` (unit s, m, h, d, w) or an RFC 3339 time.",
            "example": "now-14d"
        });
        let nested = json!({
            "type": "object",
            "description": "A condition, as the `Condition` schema describes it.",
            "additionalProperties": true
        });
        let compare = |value: Value| {
            json!({
                "type": "object",
                "required": ["field", "value"],
                "properties": {"field": field, "value": value},
                "additionalProperties": false
            })
        };
        let list =
            json!({"type": "array", "items": nested, "minItems": 1, "maxItems": MAX_CHILDREN});
        let in_values =
            json!({"type": "array", "items": scalar, "minItems": 1, "maxItems": MAX_IN_VALUES});
        let presence = json!({
            "type": "object",
            "required": ["field"],
            "properties": {"field": field},
            "additionalProperties": false
        });
        [
            ("All", "all", "Every one of these is true.", list.clone()),
            ("Any", "any", "At least one of these is true.", list),
            ("Not", "not", "This is false.", nested),
            (
                "Eq",
                "eq",
                "The field equals the value.",
                compare(scalar.clone()),
            ),
            (
                "Ne",
                "ne",
                "The field is there and does not equal the value.",
                compare(scalar.clone()),
            ),
            (
                "In",
                "in",
                "The field equals one of the values (1 to 100).",
                compare(in_values),
            ),
            (
                "Contains",
                "contains",
                "The field (text) contains the value, or (a list) has it as an element.",
                compare(scalar),
            ),
            (
                "StartsWith",
                "starts_with",
                "The field is text that starts with the value.",
                compare(json!({"type": "string", "minLength": 1})),
            ),
            (
                "Gt",
                "gt",
                "The field is a number greater than the value.",
                compare(json!({"type": "number"})),
            ),
            (
                "Lt",
                "lt",
                "The field is a number less than the value.",
                compare(json!({"type": "number"})),
            ),
            (
                "Exists",
                "exists",
                "The field is there (and not null).",
                presence,
            ),
            (
                "Before",
                "before",
                "The field is a time before the value.",
                compare(time.clone()),
            ),
            (
                "After",
                "after",
                "The field is a time after the value.",
                compare(time),
            ),
            (
                "Segment",
                "segment",
                "The user is in the project's segment of this id.",
                json!({"type": "string", "format": "uuid"}),
            ),
        ]
        .into_iter()
        .map(|(name, key, description, body)| {
            (
                format!("Condition{name}"),
                json!({
                    "type": "object",
                    "description": description,
                    "required": [key],
                    "properties": {key: body},
                    "additionalProperties": false
                }),
            )
        })
        .collect()
    }

    fn schema_of(value: Value) -> RefOr<Schema> {
        serde_json::from_value(value).expect("the condition schemas are schemas")
    }

    impl utoipa::PartialSchema for Condition {
        fn schema() -> RefOr<Schema> {
            let variants: Vec<Value> = operators()
                .into_iter()
                .map(|(name, _)| json!({"$ref": format!("#/components/schemas/{name}")}))
                .collect();
            schema_of(json!({
                "description": "A condition on the event and the user: one operator. `all`, `any` and `not` combine conditions; the others compare a `field` with a `value`. A comparison with an absent or `null` field is false.",
                "oneOf": variants,
                "example": {"all": [
                    {"eq": {"field": "event_data.plan", "value": "pro"}},
                    {"before": {"field": "trial_ends_at", "value": "now+3d"}}
                ]}
            }))
        }
    }

    impl utoipa::ToSchema for Condition {
        fn name() -> std::borrow::Cow<'static, str> {
            "Condition".into()
        }

        fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
            schemas.extend(
                operators()
                    .into_iter()
                    .map(|(name, schema)| (name, schema_of(schema))),
            );
        }
    }
}

/// What is wrong with a condition that parsed: where (a JSON pointer from the condition's
/// root) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pointer}: {reason}")]
pub struct InvalidCondition {
    pub pointer: String,
    pub reason: String,
}

impl Condition {
    /// The operator's name, as the condition spells it.
    fn operator(&self) -> &'static str {
        match self {
            Self::All(_) => "all",
            Self::Any(_) => "any",
            Self::Not(_) => "not",
            Self::Eq(_) => "eq",
            Self::Ne(_) => "ne",
            Self::In(_) => "in",
            Self::Contains(_) => "contains",
            Self::StartsWith(_) => "starts_with",
            Self::Gt(_) => "gt",
            Self::Lt(_) => "lt",
            Self::Exists(_) => "exists",
            Self::Before(_) => "before",
            Self::After(_) => "after",
            Self::Segment(_) => "segment",
        }
    }

    /// Checks what the types alone cannot: sizes, nesting, and fields that can hold what the
    /// operator compares.
    pub fn validate(&self) -> Result<(), InvalidCondition> {
        let mut nodes = 0;
        self.validate_at("", 0, &mut nodes)?;
        let mut seen: Vec<Uuid> = Vec::new();
        for (pointer, id) in self.segment_refs() {
            if !seen.contains(&id) {
                seen.push(id);
            }
            if seen.len() > MAX_SEGMENTS {
                return Err(InvalidCondition {
                    pointer,
                    reason: format!("a condition refers to at most {MAX_SEGMENTS} segments"),
                });
            }
        }
        Ok(())
    }

    /// Checks a segment's own condition: as [`validate`](Self::validate), and it reads the
    /// user only (a segment is a set of users, whatever the event) and refers to no segment.
    pub fn validate_segment(&self) -> Result<(), InvalidCondition> {
        self.validate()?;
        if let Some((pointer, _)) = self.segment_refs().into_iter().next() {
            return Err(InvalidCondition {
                pointer,
                reason: "a segment's condition cannot refer to a segment".to_owned(),
            });
        }
        match self.first_event_field("") {
            Some(pointer) => Err(InvalidCondition {
                pointer,
                reason: "a segment's condition reads user fields only, not `event_data.*`"
                    .to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// The pointer of the first field that reads the event, if any.
    fn first_event_field(&self, at: &str) -> Option<String> {
        let here = format!("{at}/{}", self.operator());
        match self {
            Self::All(children) | Self::Any(children) => children
                .iter()
                .enumerate()
                .find_map(|(i, c)| c.first_event_field(&format!("{here}/{i}"))),
            Self::Not(child) => child.first_event_field(&here),
            Self::Segment(_) => None,
            other => other
                .field()
                .is_some_and(|f| matches!(f, Field::EventData(_)))
                .then(|| format!("{here}/field")),
        }
    }

    /// The field a comparison reads.
    fn field(&self) -> Option<&Field> {
        match self {
            Self::All(_) | Self::Any(_) | Self::Not(_) | Self::Segment(_) => None,
            Self::Eq(c) | Self::Ne(c) | Self::Contains(c) => Some(&c.field),
            Self::In(m) => Some(&m.field),
            Self::StartsWith(t) => Some(&t.field),
            Self::Gt(n) | Self::Lt(n) => Some(&n.field),
            Self::Exists(p) => Some(&p.field),
            Self::Before(t) | Self::After(t) => Some(&t.field),
        }
    }

    /// The first segment the condition refers to that `segments` lacks.
    pub fn missing_segment(&self, segments: &Segments) -> Option<Uuid> {
        match self {
            Self::All(children) | Self::Any(children) => children
                .iter()
                .find_map(|child| child.missing_segment(segments)),
            Self::Not(child) => child.missing_segment(segments),
            Self::Segment(id) => (!segments.contains_key(id)).then_some(*id),
            _ => None,
        }
    }

    /// Every segment the condition refers to, with the JSON pointer of each reference, in
    /// order (a segment referred to twice is listed twice).
    pub fn segment_refs(&self) -> Vec<(String, Uuid)> {
        fn walk(c: &Condition, at: &str, out: &mut Vec<(String, Uuid)>) {
            let here = format!("{at}/{}", c.operator());
            match c {
                Condition::All(children) | Condition::Any(children) => {
                    for (i, child) in children.iter().enumerate() {
                        walk(child, &format!("{here}/{i}"), out);
                    }
                }
                Condition::Not(child) => walk(child, &here, out),
                Condition::Segment(id) => out.push((here, *id)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(self, "", &mut out);
        out
    }

    fn validate_at(
        &self,
        at: &str,
        depth: usize,
        nodes: &mut usize,
    ) -> Result<(), InvalidCondition> {
        let here = format!("{at}/{}", self.operator());
        let fail = |pointer: String, reason: String| Err(InvalidCondition { pointer, reason });
        *nodes += 1;
        if *nodes > MAX_NODES {
            return fail(
                here,
                format!("a condition holds at most {MAX_NODES} operators"),
            );
        }
        match self {
            Self::All(children) | Self::Any(children) => {
                if depth >= MAX_DEPTH {
                    return fail(here, format!("conditions nest at most {MAX_DEPTH} deep"));
                }
                if children.is_empty() || children.len() > MAX_CHILDREN {
                    return fail(
                        here,
                        format!("`{}` lists 1 to {MAX_CHILDREN} conditions", self.operator()),
                    );
                }
                for (i, child) in children.iter().enumerate() {
                    child.validate_at(&format!("{here}/{i}"), depth + 1, nodes)?;
                }
                Ok(())
            }
            Self::Not(child) => {
                if depth >= MAX_DEPTH {
                    return fail(here, format!("conditions nest at most {MAX_DEPTH} deep"));
                }
                child.validate_at(&here, depth + 1, nodes)
            }
            Self::Eq(Comparison { field, .. })
            | Self::Ne(Comparison { field, .. })
            | Self::In(Membership { field, .. })
            | Self::StartsWith(TextComparison { field, .. })
                if field.is_list() =>
            {
                fail(
                    format!("{here}/field"),
                    format!(
                        "`{}` is a list: ask with `contains` (or `not` `contains`) or `exists`, not `{}`",
                        String::from(field.clone()),
                        self.operator()
                    ),
                )
            }
            Self::In(m) if m.value.is_empty() || m.value.len() > MAX_IN_VALUES => fail(
                format!("{here}/value"),
                format!("`in` lists 1 to {MAX_IN_VALUES} values"),
            ),
            Self::StartsWith(t) if t.value.is_empty() || t.value.chars().count() > MAX_TEXT => {
                fail(
                    format!("{here}/value"),
                    format!("`starts_with` needs 1 to {MAX_TEXT} characters"),
                )
            }
            Self::Gt(n) | Self::Lt(n) if !n.field.may_hold_number() => fail(
                format!("{here}/field"),
                format!(
                    "`{}` compares numbers: an `event_data.*` or `custom_fields.*` field",
                    self.operator()
                ),
            ),
            Self::Gt(n) | Self::Lt(n) if !n.value.is_finite() => fail(
                format!("{here}/value"),
                "the value must be a finite number".to_owned(),
            ),
            Self::Before(t) | Self::After(t) if !t.field.may_hold_time() => fail(
                format!("{here}/field"),
                format!(
                    "`{}` compares times: `trial_ends_at`, `created_at`, or an `event_data.*` or `custom_fields.*` field",
                    self.operator()
                ),
            ),
            _ => Ok(()),
        }
    }

    /// Whether any comparison reads the user.
    pub fn reads_user(&self) -> bool {
        match self {
            Self::All(children) | Self::Any(children) => children.iter().any(Self::reads_user),
            Self::Not(child) => child.reads_user(),
            Self::Segment(_) => true,
            other => other.field().is_some_and(Field::reads_user),
        }
    }

    /// `Ok(())` when the condition holds for `subject`; otherwise the JSON pointer (from the
    /// condition's root) of the clause that made it false: the first false condition of an
    /// `all`, the `any` none of whose conditions held, the `not` whose condition held.
    ///
    /// A `segment` holds when that segment's condition in `segments` does; one missing from
    /// `segments` is false (the pointer is the reference's).
    ///
    /// Each segment is evaluated once, however often the condition refers to it: at most
    /// [`MAX_SEGMENTS`] segments of at most [`MAX_NODES`] operators each, beside the
    /// condition's own. Only a false condition's pointer is written out: one that holds costs
    /// no allocation.
    pub fn evaluate(&self, subject: &Subject<'_>, segments: &Segments) -> Result<(), String> {
        let mut verdicts = Verdicts {
            segments,
            found: [(Uuid::nil(), false); MAX_SEGMENTS],
            len: 0,
        };
        self.evaluate_in(subject, Some(&mut verdicts))
            .map_err(|clause| clause.pointer())
    }

    /// [`Condition::evaluate`], the segments' verdicts taken from `verdicts` (none inside a
    /// segment, whose own references are false); a false clause's path is kept on the stack.
    fn evaluate_in(
        &self,
        subject: &Subject<'_>,
        mut verdicts: Option<&mut Verdicts<'_>>,
    ) -> Result<(), FalseClause> {
        let holds = match self {
            Self::All(children) => {
                for (i, child) in children.iter().enumerate() {
                    if let Err(mut clause) = child.evaluate_in(subject, verdicts.as_deref_mut()) {
                        clause.inside_all(i);
                        return Err(clause);
                    }
                }
                true
            }
            Self::Any(children) => children
                .iter()
                .any(|child| child.evaluate_in(subject, verdicts.as_deref_mut()).is_ok()),
            Self::Not(child) => child.evaluate_in(subject, verdicts).is_err(),
            Self::Segment(id) => verdicts.is_some_and(|v| v.of(*id, subject)),
            Self::Eq(c) => subject.read(&c.field).is_some_and(|v| same(&v, &c.value.0)),
            Self::Ne(c) => subject
                .read(&c.field)
                .is_some_and(|v| !same(&v, &c.value.0)),
            Self::In(m) => subject
                .read(&m.field)
                .is_some_and(|v| m.value.iter().any(|option| same(&v, &option.0))),
            Self::Contains(c) => match (&c.field, &c.value.0) {
                // A user's groups are a list of strings: asked without copying them.
                (Field::Groups, Value::String(wanted)) => subject
                    .user
                    .is_some_and(|u| u.groups.iter().any(|g| g == wanted)),
                _ => subject
                    .read(&c.field)
                    .is_some_and(|v| match (v.as_ref(), &c.value.0) {
                        (Value::String(text), Value::String(part)) => text.contains(part.as_str()),
                        (Value::Array(items), wanted) => {
                            items.iter().any(|item| same(item, wanted))
                        }
                        _ => false,
                    }),
            },
            Self::StartsWith(t) => subject
                .read(&t.field)
                .is_some_and(|v| v.as_str().is_some_and(|s| s.starts_with(t.value.as_str()))),
            Self::Gt(n) => subject
                .read(&n.field)
                .and_then(|v| v.as_f64())
                .is_some_and(|v| v > n.value),
            Self::Lt(n) => subject
                .read(&n.field)
                .and_then(|v| v.as_f64())
                .is_some_and(|v| v < n.value),
            Self::Exists(p) => subject.has(&p.field),
            Self::Before(t) => subject
                .time(&t.field)
                .is_some_and(|v| v < t.value.resolve(subject.now)),
            Self::After(t) => subject
                .time(&t.field)
                .is_some_and(|v| v > t.value.resolve(subject.now)),
        };
        if holds {
            Ok(())
        } else {
            Err(FalseClause::at(self.operator()))
        }
    }
}

/// The verdicts of the segments a condition refers to, each found the first time it is asked
/// for.
struct Verdicts<'s> {
    segments: &'s Segments,
    found: [(Uuid, bool); MAX_SEGMENTS],
    len: usize,
}

impl Verdicts<'_> {
    /// Whether segment `id` holds for `subject`: false when it is not in the segments.
    fn of(&mut self, id: Uuid, subject: &Subject<'_>) -> bool {
        if let Some((_, verdict)) = self.found[..self.len].iter().find(|(s, _)| *s == id) {
            return *verdict;
        }
        let verdict = self
            .segments
            .get(&id)
            .is_some_and(|c| c.evaluate_in(subject, None).is_ok());
        // A condition refers to at most MAX_SEGMENTS segments; stored ones written by hand
        // may refer to more, which are then evaluated at each reference.
        if let Some(slot) = self.found.get_mut(self.len) {
            *slot = (id, verdict);
            self.len += 1;
        }
        verdict
    }
}

/// Where a false clause sits: only an `all` says which of its conditions was false (an `any`
/// or a `not` is false itself), so the path is the index in each `all` around the clause,
/// kept without allocating until it is written out.
struct FalseClause {
    operator: &'static str,
    /// Innermost first.
    alls: [usize; MAX_DEPTH],
    len: usize,
    /// The steps beyond [`MAX_DEPTH`], innermost first: only a condition stored deeper than
    /// allowed (by hand) has any, and its pointer still names the clause from the root.
    outer: Vec<usize>,
}

impl FalseClause {
    fn at(operator: &'static str) -> Self {
        Self {
            operator,
            alls: [0; MAX_DEPTH],
            len: 0,
            outer: Vec::new(),
        }
    }

    /// The clause is the `i`th condition of an `all`.
    fn inside_all(&mut self, i: usize) {
        match self.alls.get_mut(self.len) {
            Some(slot) => {
                *slot = i;
                self.len += 1;
            }
            None => self.outer.push(i),
        }
    }

    /// The JSON pointer, from the root.
    fn pointer(&self) -> String {
        let mut out = String::new();
        for i in self
            .outer
            .iter()
            .rev()
            .chain(self.alls[..self.len].iter().rev())
        {
            out.push_str("/all/");
            out.push_str(&i.to_string());
        }
        out.push('/');
        out.push_str(self.operator);
        out
    }
}

/// Two JSON values are the same: numbers by value, everything else exactly.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        // Integers exactly (big ids differ in their last digits); a float against anything
        // as floats (`5` is `5.0`).
        (Value::Number(x), Value::Number(y)) => match (x.as_i128(), y.as_i128()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        _ => a == b,
    }
}

/// What conditions read: the event's properties and the user as they are when the event is
/// handled, and that moment.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub now: OffsetDateTime,
    pub event_data: Option<&'a Value>,
    /// `None` when the project has no such user yet.
    pub user: Option<UserFacts<'a>>,
}

/// The user's fields a condition may read.
#[derive(Debug, Clone, Copy)]
pub struct UserFacts<'a> {
    pub email: Option<&'a str>,
    pub name: Option<&'a str>,
    pub groups: &'a [String],
    pub custom_fields: &'a Value,
    pub trial_ends_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
}

fn follow<'v>(mut value: &'v Value, keys: &[String]) -> Option<&'v Value> {
    for key in keys {
        value = value.as_object()?.get(key)?;
    }
    (!value.is_null()).then_some(value)
}

fn rfc3339(at: OffsetDateTime) -> Value {
    Value::String(
        at.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    )
}

impl Subject<'_> {
    /// The field's value, when it is there and not `null`: borrowed where it is JSON already
    /// (event data, attributes, however large), so reading it costs nothing.
    fn read(&self, field: &Field) -> Option<Cow<'_, Value>> {
        let user = self.user.as_ref();
        match field {
            Field::EventData(keys) => self
                .event_data
                .and_then(|d| follow(d, keys))
                .map(Cow::Borrowed),
            Field::CustomField(keys) => user
                .and_then(|u| follow(u.custom_fields, keys))
                .map(Cow::Borrowed),
            Field::Email => user
                .and_then(|u| u.email)
                .map(|s| Cow::Owned(Value::String(s.to_owned()))),
            Field::Name => user
                .and_then(|u| u.name)
                .map(|s| Cow::Owned(Value::String(s.to_owned()))),
            // In no group is no groups: `exists` asks whether the user is in any.
            Field::Groups => user.filter(|u| !u.groups.is_empty()).map(|u| {
                Cow::Owned(Value::Array(
                    u.groups.iter().map(|g| Value::String(g.clone())).collect(),
                ))
            }),
            Field::TrialEndsAt => user
                .and_then(|u| u.trial_ends_at)
                .map(|t| Cow::Owned(rfc3339(t))),
            Field::CreatedAt => user.map(|u| Cow::Owned(rfc3339(u.created_at))),
        }
    }

    /// Whether the field is there and not `null`: [`Subject::read`] is `Some`, without
    /// copying what it would read.
    fn has(&self, field: &Field) -> bool {
        let user = self.user.as_ref();
        match field {
            Field::EventData(keys) => self.event_data.and_then(|d| follow(d, keys)).is_some(),
            Field::CustomField(keys) => user.and_then(|u| follow(u.custom_fields, keys)).is_some(),
            Field::Email => user.is_some_and(|u| u.email.is_some()),
            Field::Name => user.is_some_and(|u| u.name.is_some()),
            Field::Groups => user.is_some_and(|u| !u.groups.is_empty()),
            Field::TrialEndsAt => user.is_some_and(|u| u.trial_ends_at.is_some()),
            Field::CreatedAt => user.is_some(),
        }
    }

    /// The field as a time, when it holds one.
    fn time(&self, field: &Field) -> Option<OffsetDateTime> {
        let user = self.user.as_ref();
        match field {
            Field::TrialEndsAt => user.and_then(|u| u.trial_ends_at),
            Field::CreatedAt => user.map(|u| u.created_at),
            other => self
                .read(other)
                .and_then(|v| v.as_str().and_then(parse_time)),
        }
    }
}

#[cfg(test)]
mod tests;
