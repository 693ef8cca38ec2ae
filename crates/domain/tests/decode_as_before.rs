//! `decode` reads the message around its `data` (since 6ae0200); what it accepts and how it
//! classifies what it refuses must stay as when it read the message into a
//! `serde_json::Value` first, but for what a field the payload does not know holds. `before`
//! is that reading, as it was at a078f29.

use beckon_domain::envelope::{self, DecodeError, Envelope, EventMatched, EventReceived, Payload};
use uuid::Uuid;

/// `decode` as it was before the message was read around its data.
fn before<T: Payload>(bytes: &[u8]) -> Result<Envelope<T>, DecodeError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(DecodeError::MalformedJson)?;
    let raw: Envelope<serde_json::Value> =
        serde_json::from_value(value).map_err(DecodeError::SchemaViolation)?;
    if raw.kind != T::TYPE {
        return Err(DecodeError::UnknownType {
            found: raw.kind,
            expected: T::TYPE,
        });
    }
    if raw.version != T::VERSION {
        return Err(DecodeError::UnknownVersion {
            kind: raw.kind,
            found: raw.version,
            expected: T::VERSION,
        });
    }
    let data = serde_json::from_value(raw.data).map_err(DecodeError::SchemaViolation)?;
    Ok(Envelope {
        id: raw.id,
        kind: raw.kind,
        version: raw.version,
        occurred_at: raw.occurred_at,
        org_id: raw.org_id,
        project_id: raw.project_id,
        correlation_id: raw.correlation_id,
        data,
    })
}

fn outcome<T>(r: Result<Envelope<T>, DecodeError>) -> &'static str {
    match r {
        Ok(_) => "accepted",
        Err(err) => err.reason(),
    }
}

/// A whole `event.received` envelope as text, `data` as given.
fn received(data: &str) -> String {
    format!(
        r#"{{"id":"{}","type":"event.received","version":1,"occurred_at":"2026-01-01T00:00:00Z","org_id":"{}","project_id":"{}","correlation_id":"{}","data":{data}}}"#,
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7()
    )
}

const DATA: &str =
    r#"{"trigger_type":"event","user_ref":"ada","event":"trial_expired","reply_to":null"#;

fn check(cases: &[(&str, Vec<u8>)]) {
    let mut differ = Vec::new();
    for (what, bytes) in cases {
        let now = outcome(envelope::decode::<EventReceived>(bytes));
        let was = outcome(before::<EventReceived>(bytes));
        if now != was {
            differ.push(format!("{what}: now {now}, before {was}"));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

fn with_byte(text: String, marker: &str, byte: u8) -> Vec<u8> {
    let mut bytes = text.into_bytes();
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .unwrap();
    bytes[at] = byte;
    bytes
}

/// An envelope whose keys repeat was read, the last value of each key winning: no writer
/// of ours repeats a key, but one that does must not lose its message now.
#[test]
fn decode_reads_repeated_keys_as_before() {
    let once = received(&format!("{DATA}}}"));
    check(&[
        (
            "a repeated key in data",
            received(&format!(r#"{DATA},"event":"trial_expired"}}"#)).into_bytes(),
        ),
        (
            "a repeated envelope id",
            once.replacen(
                "{\"id\"",
                &format!("{{\"id\":\"{}\",\"id\"", Uuid::now_v7()),
                1,
            )
            .into_bytes(),
        ),
    ]);
}

/// What serde_json cannot read as JSON (a number out of range, a lone surrogate, nesting
/// past its limit, bytes that are not UTF-8) was dead-lettered `malformed_json`, wherever it
/// is: inside a field the payload reads, after a field that does not fit, or in a message of
/// another type.
#[test]
fn decode_calls_unreadable_json_malformed_as_before() {
    check(&[
        (
            "a number out of range in event_data",
            received(&format!(r#"{DATA},"event_data":{{"n":1e400}}}}"#)).into_bytes(),
        ),
        (
            "a lone surrogate in event_data",
            received(&format!(r#"{DATA},"event_data":{{"s":"\ud800"}}}}"#)).into_bytes(),
        ),
        (
            "nesting past the limit in event_data",
            received(&format!(
                r#"{DATA},"event_data":{{"d":{}{}}}}}"#,
                "[".repeat(200),
                "]".repeat(200)
            ))
            .into_bytes(),
        ),
        (
            "a bad id, then a lone surrogate",
            br#"{"id":1,"x":"\ud800"}"#.to_vec(),
        ),
        (
            "a bad id, then a number out of range",
            br#"{"id":1,"x":1e400}"#.to_vec(),
        ),
        (
            "a bad id, then a byte that is not UTF-8",
            with_byte(r#"{"id":1,"x":"XX"}"#.to_owned(), "XX", 0xff),
        ),
        (
            "another type, a number out of range in its data",
            received(r#"{"x":1e400}"#)
                .replace("event.received", "event.matched")
                .into_bytes(),
        ),
    ]);
}

/// Unreadable JSON in a field the payload does not know was refused; it is skipped now, not
/// read, and the message is accepted. The one difference, and on purpose: what the payload
/// does not read cannot harm it.
#[test]
fn decode_skips_unreadable_json_in_fields_the_payload_does_not_know() {
    for (what, bytes) in [
        (
            "a number out of range",
            received(&format!(r#"{DATA},"extra":1e400}}"#)).into_bytes(),
        ),
        (
            "a lone surrogate",
            received(&format!(r#"{DATA},"extra":"\ud800"}}"#)).into_bytes(),
        ),
        (
            "nesting past the limit",
            received(&format!(
                r#"{DATA},"x":{}{}}}"#,
                "[".repeat(200),
                "]".repeat(200)
            ))
            .into_bytes(),
        ),
    ] {
        assert_eq!(
            outcome(envelope::decode::<EventReceived>(&bytes)),
            "accepted",
            "{what}"
        );
        assert_eq!(
            outcome(before::<EventReceived>(&bytes)),
            "malformed_json",
            "{what}"
        );
    }
}

/// What read the same before still does.
#[test]
fn decode_reads_ordinary_and_broken_messages_as_before() {
    let ok = received(&format!("{DATA}}}"));
    check(&[
        ("a whole message", ok.clone().into_bytes()),
        ("data null", received("null").into_bytes()),
        (
            "a byte order mark",
            [b"\xef\xbb\xbf".to_vec(), ok.clone().into_bytes()].concat(),
        ),
        (
            "trailing text",
            [ok.clone().into_bytes(), b" x".to_vec()].concat(),
        ),
        (
            "a byte that is not UTF-8 in a skipped field",
            with_byte(received(&format!(r#"{DATA},"extra":"XX"}}"#)), "XX", 0xff),
        ),
        (
            "an unknown envelope field",
            ok.replacen("{\"id\"", "{\"x\":1,\"id\"", 1).into_bytes(),
        ),
        ("not JSON", b"{not json".to_vec()),
    ]);
    // Another payload type reads as before too.
    let matched = ok.replace("event.received", "event.matched");
    assert_eq!(
        outcome(envelope::decode::<EventMatched>(matched.as_bytes())),
        outcome(before::<EventMatched>(matched.as_bytes()))
    );
}
