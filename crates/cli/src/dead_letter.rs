//! What a dead letter says about itself — why and when it was dead-lettered, which envelope it
//! carries — read from its headers and body, and how it is shown with its secrets redacted.
//!
//! Two makers write dead letters differently:
//! - a Beckon consumer that gives up on a message stamps `x-beckon-reason`, `x-beckon-detail`,
//!   `x-beckon-queue` and `x-beckon-dead-lettered-at` (an AMQP timestamp);
//! - the broker (a delivery limit, a reject without requeue, a TTL, a length limit) records an
//!   `x-death` list, newest first, each entry with its `reason`, `queue`, `count` and `time`,
//!   and `x-first-death-reason` / `x-first-death-queue`.
//!
//! Beckon's own headers win where both are present.

use beckon_bus::headers;
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// The facts a dead letter is selected by, and listed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The AMQP message id: the envelope's id for Beckon's messages.
    pub message_id: Option<String>,
    /// The envelope's type, when the body is an envelope.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Why it was dead-lettered: Beckon's reason, else the broker's.
    pub reason: Option<String>,
    /// When it was dead-lettered (to the second), when that was recorded.
    #[serde(with = "time::serde::rfc3339::option")]
    pub dead_lettered_at: Option<OffsetDateTime>,
}

impl Summary {
    pub fn of(delivery: &Delivery) -> Self {
        let table = delivery.properties.headers().as_ref();
        Self {
            message_id: delivery
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.as_str().to_owned()),
            kind: envelope_type(&delivery.data),
            reason: reason(table),
            dead_lettered_at: dead_lettered_at(table),
        }
    }
}

/// Which dead letters a replay takes. Every condition given must hold; a dead letter whose
/// time was not recorded never matches `since` or `until`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// The envelope type.
    pub kind: Option<String>,
    /// The dead-letter reason.
    pub reason: Option<String>,
    /// Dead-lettered at or after.
    pub since: Option<OffsetDateTime>,
    /// Dead-lettered before.
    pub until: Option<OffsetDateTime>,
}

impl Filter {
    pub fn selects(&self, dead_letter: &Summary) -> bool {
        let is = |wanted: &Option<String>, got: &Option<String>| {
            wanted.is_none() || wanted.as_deref() == got.as_deref()
        };
        let at = dead_letter.dead_lettered_at;
        is(&self.kind, &dead_letter.kind)
            && is(&self.reason, &dead_letter.reason)
            && self.since.is_none_or(|s| at.is_some_and(|t| t >= s))
            && self.until.is_none_or(|u| at.is_some_and(|t| t < u))
    }
}

/// One entry of the broker's `x-death` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Death {
    pub reason: Option<String>,
    pub queue: Option<String>,
    /// How often the message died in this queue for this reason.
    pub count: Option<i64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub time: Option<OffsetDateTime>,
}

/// The broker's `x-death` list, newest first.
pub fn deaths(table: Option<&FieldTable>) -> Vec<Death> {
    let Some(AMQPValue::FieldArray(list)) = table.and_then(|t| t.inner().get("x-death")) else {
        return Vec::new();
    };
    list.as_slice()
        .iter()
        .filter_map(|entry| match entry {
            AMQPValue::FieldTable(entry) => Some(Death {
                reason: headers::get_str(Some(entry), "reason"),
                queue: headers::get_str(Some(entry), "queue"),
                count: headers::get_int(Some(entry), "count"),
                time: timestamp(entry.inner().get("time")),
            }),
            _ => None,
        })
        .collect()
}

/// Why it was dead-lettered: Beckon's reason, else the broker's latest.
pub fn reason(table: Option<&FieldTable>) -> Option<String> {
    headers::get_str(table, headers::REASON)
        .or_else(|| deaths(table).into_iter().find_map(|d| d.reason))
        .or_else(|| headers::get_str(table, headers::FIRST_DEATH_REASON))
}

/// When it was dead-lettered: Beckon's stamp, else the broker's latest death.
pub fn dead_lettered_at(table: Option<&FieldTable>) -> Option<OffsetDateTime> {
    timestamp(table.and_then(|t| t.inner().get(headers::DEAD_LETTERED_AT)))
        .or_else(|| deaths(table).into_iter().find_map(|d| d.time))
}

fn timestamp(value: Option<&AMQPValue>) -> Option<OffsetDateTime> {
    let seconds = match value? {
        AMQPValue::Timestamp(s) => i64::try_from(*s).ok()?,
        AMQPValue::LongLongInt(s) => *s,
        _ => return None,
    };
    OffsetDateTime::from_unix_timestamp(seconds).ok()
}

/// The fields of an envelope a dead letter is told by.
#[derive(Deserialize)]
struct EnvelopeHead {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// The envelope type of a body, when it is an envelope.
pub fn envelope_type(data: &[u8]) -> Option<String> {
    serde_json::from_slice::<EnvelopeHead>(data).ok()?.kind
}

/// Whether `dlq peek` prints secrets in a body as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reveal {
    /// Magic links (sealed or not) and tokens are printed as `<redacted>`.
    Redacted,
    /// As the message holds them (`--reveal`).
    AsIs,
}

/// A dead letter as `dlq peek` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Peeked {
    /// Its place in the dead-letter queue, from 1 at the head.
    pub position: u32,
    #[serde(flatten)]
    pub summary: Summary,
    /// Beckon's human-readable detail of the reason.
    pub detail: Option<String>,
    /// The work queue it came from.
    pub source_queue: Option<String>,
    /// The broker's record of its deaths, newest first (empty for Beckon's own).
    pub deaths: Vec<Death>,
    /// Its other headers (a trace context, the broker's `x-first-death-*`), as text.
    pub headers: BTreeMap<String, String>,
    /// The body, when it is JSON (secrets redacted unless revealed).
    pub body: Option<serde_json::Value>,
    /// The body when it is not JSON: as text with `--reveal`, else a placeholder.
    pub body_text: Option<String>,
}

impl Peeked {
    pub fn of(position: u32, delivery: &Delivery, reveal: Reveal) -> Self {
        let table = delivery.properties.headers().as_ref();
        let headers = table
            .map(|t| {
                t.inner()
                    .iter()
                    .filter(|(k, _)| {
                        let k = k.as_str();
                        !k.starts_with("x-beckon") && k != "x-death"
                    })
                    .map(|(k, v)| (k.as_str().to_owned(), describe(v)))
                    .collect()
            })
            .unwrap_or_default();
        let (body, body_text) = match serde_json::from_slice::<serde_json::Value>(&delivery.data) {
            Ok(mut body) => {
                if reveal == Reveal::Redacted {
                    redact(&mut body);
                }
                (Some(body), None)
            }
            // Not JSON: no field tells a secret apart, so only what is asked for is shown.
            Err(_) if reveal == Reveal::Redacted => (
                None,
                Some(format!(
                    "<{} bytes, not JSON; --reveal shows them>",
                    delivery.data.len()
                )),
            ),
            Err(_) => (
                None,
                Some(String::from_utf8_lossy(&delivery.data).into_owned()),
            ),
        };
        Self {
            position,
            summary: Summary::of(delivery),
            detail: headers::get_str(table, headers::DETAIL),
            source_queue: headers::get_str(table, headers::SOURCE_QUEUE),
            deaths: deaths(table),
            headers,
            body,
            body_text,
        }
    }

    /// Writes it for a person.
    pub fn table(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let s = &self.summary;
        writeln!(out, "--- message {} ---", self.position)?;
        writeln!(out, "reason: {}", s.reason.as_deref().unwrap_or("unknown"))?;
        if let Some(detail) = self.detail.as_deref().filter(|d| !d.is_empty()) {
            writeln!(out, "detail: {detail}")?;
        }
        writeln!(
            out,
            "dead-lettered at: {}",
            crate::output::cell(s.dead_lettered_at)
        )?;
        if let Some(id) = &s.message_id {
            writeln!(out, "message id: {id}")?;
        }
        for d in &self.deaths {
            writeln!(
                out,
                "death: {} in {} at {} ({} time(s))",
                d.reason.as_deref().unwrap_or("?"),
                d.queue.as_deref().unwrap_or("?"),
                crate::output::cell(d.time),
                d.count.unwrap_or(1)
            )?;
        }
        for (k, v) in &self.headers {
            writeln!(out, "header {k}: {v}")?;
        }
        match (&self.body, &self.body_text) {
            (Some(body), _) => writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(body).unwrap_or_default()
            ),
            (None, Some(text)) => writeln!(out, "{text}"),
            (None, None) => Ok(()),
        }
    }
}

/// Fields whose value is a bearer secret, sealed or not.
const SECRET_FIELDS: [&str; 4] = ["magic_link_url", "magic_link_sealed", "token", "secret"];
/// Prefixes of Beckon's tokens and secrets, wherever they turn up.
const SECRET_PREFIXES: [&str; 3] = ["oat_", "whsec_", "wsk_"];

/// Replaces every secret in a dead letter's body (any envelope type, any version, or none)
/// with `<redacted>`.
fn redact(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                if SECRET_FIELDS.contains(&name.as_str()) && field.is_string() {
                    *field = Value::from("<redacted>");
                } else {
                    redact(field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(text)
            if SECRET_PREFIXES.iter().any(|p| text.contains(p)) || text.contains("/surveys/") =>
        {
            *text = "<redacted>".into();
        }
        _ => {}
    }
}

fn describe(value: &AMQPValue) -> String {
    match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::BasicProperties;
    use lapin::types::{FieldArray, ShortString};

    fn delivery(body: &[u8], table: FieldTable) -> Delivery {
        let mut d = Delivery::mock(1, "".into(), "".into(), false, body.to_vec());
        d.properties = BasicProperties::default().with_headers(table);
        d
    }

    fn shown(body: &[u8], reveal: Reveal) -> String {
        let peeked = Peeked::of(1, &delivery(body, FieldTable::default()), reveal);
        let mut out = Vec::new();
        peeked.table(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn peeked_bodies_hide_links_and_tokens_unless_revealed() {
        let body = serde_json::json!({
            "type": "invitation.created",
            "data": {
                "invitation": {"id": "i", "magic_link_url": "https://b.example/surveys/AAAA"},
                "links": [{"magic_link_sealed": "c2VhbGVk"}],
                "note": "see https://b.example/surveys/BBBB",
                "user": {"email": "ada@example.com"},
                "header": "Bearer oat_CCCC",
            }
        });
        let raw = serde_json::to_vec(&body).unwrap();
        let redacted = shown(&raw, Reveal::Redacted);
        for secret in ["AAAA", "BBBB", "CCCC", "c2VhbGVk"] {
            assert!(!redacted.contains(secret), "{redacted}");
        }
        assert!(redacted.contains("ada@example.com") && redacted.contains("invitation.created"));
        assert!(shown(&raw, Reveal::AsIs).contains("AAAA"));
        assert!(!shown(b"oat_DDDD not json", Reveal::Redacted).contains("DDDD"));
    }

    fn broker_death(reason: &str, at: u64) -> FieldTable {
        let mut entry = FieldTable::default();
        headers::set_str(&mut entry, "reason", reason);
        headers::set_str(&mut entry, "queue", "beckon.matcher");
        headers::set_int(&mut entry, "count", 1);
        entry.insert(ShortString::from("time"), AMQPValue::Timestamp(at));
        let mut table = FieldTable::default();
        table.insert(
            ShortString::from("x-death"),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(entry)])),
        );
        headers::set_str(&mut table, headers::FIRST_DEATH_REASON, reason);
        table
    }

    #[test]
    fn a_dead_letter_is_told_by_beckons_headers_else_the_brokers() {
        let at = 1_800_000_000;
        let by_broker = delivery(
            br#"{"type": "event.received"}"#,
            broker_death("expired", at),
        );
        let s = Summary::of(&by_broker);
        assert_eq!(s.kind.as_deref(), Some("event.received"));
        assert_eq!(s.reason.as_deref(), Some("expired"));
        assert_eq!(
            s.dead_lettered_at.map(|t| t.unix_timestamp()),
            Some(at as i64)
        );

        let mut table = broker_death("delivery_limit", at);
        headers::set_str(&mut table, headers::REASON, "schema_violation");
        headers::set_timestamp(
            &mut table,
            headers::DEAD_LETTERED_AT,
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(at + 60),
        );
        let s = Summary::of(&delivery(b"not json", table));
        assert_eq!(s.kind, None);
        assert_eq!(s.reason.as_deref(), Some("schema_violation"));
        assert_eq!(
            s.dead_lettered_at.map(|t| t.unix_timestamp()),
            Some(at as i64 + 60)
        );
        assert_eq!(
            Summary::of(&delivery(b"{}", FieldTable::default())).reason,
            None
        );
    }

    #[test]
    fn a_filter_needs_every_condition_and_a_known_time_for_a_time_window() {
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let s = Summary {
            message_id: None,
            kind: Some("event.received".into()),
            reason: Some("rejected".into()),
            dead_lettered_at: Some(at),
        };
        let f = |kind: Option<&str>, reason: Option<&str>, since, until| Filter {
            kind: kind.map(Into::into),
            reason: reason.map(Into::into),
            since,
            until,
        };
        let sec = time::Duration::seconds(1);
        assert!(Filter::default().selects(&s));
        assert!(
            f(
                Some("event.received"),
                Some("rejected"),
                Some(at),
                Some(at + sec)
            )
            .selects(&s)
        );
        assert!(!f(Some("event.matched"), None, None, None).selects(&s));
        assert!(!f(None, Some("expired"), None, None).selects(&s));
        assert!(
            !f(None, None, Some(at + sec), None).selects(&s),
            "since is inclusive"
        );
        assert!(
            !f(None, None, None, Some(at)).selects(&s),
            "until is exclusive"
        );
        let unknown = Summary {
            dead_lettered_at: None,
            ..s.clone()
        };
        assert!(!f(None, None, Some(at - sec), None).selects(&unknown));
        assert!(f(None, None, None, None).selects(&unknown));
    }
}
