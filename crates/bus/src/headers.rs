//! Reading and writing AMQP headers.

use lapin::types::{AMQPValue, FieldTable, ShortString};

/// Header naming why Beckon dead-lettered a message (`malformed_json`, `unknown_version`, ...).
pub const REASON: &str = "x-beckon-reason";
/// Header with the human-readable detail of [`REASON`].
pub const DETAIL: &str = "x-beckon-detail";
/// Header naming the work queue a dead-lettered message came from.
pub const SOURCE_QUEUE: &str = "x-beckon-queue";
/// Header with when Beckon dead-lettered a message: an AMQP timestamp (seconds since the Unix
/// epoch), as the broker records its own dead letters' time in `x-death`. The operator CLI
/// selects dead letters to replay by it.
pub const DEAD_LETTERED_AT: &str = "x-beckon-dead-lettered-at";
/// Set by RabbitMQ on a message it dead-lettered itself (e.g. `delivery_limit`).
pub const FIRST_DEATH_REASON: &str = "x-first-death-reason";
/// Set by RabbitMQ on a message it dead-lettered itself: the queue it was in.
pub const FIRST_DEATH_QUEUE: &str = "x-first-death-queue";
/// Set by quorum queues: how many times the message was delivered before.
pub const DELIVERY_COUNT: &str = "x-delivery-count";

/// Headers carrying the W3C trace context `traceparent`, when there is one.
pub fn traced(traceparent: Option<&str>) -> FieldTable {
    let mut table = FieldTable::default();
    if let Some(value) = traceparent {
        set_str(&mut table, beckon_runtime::telemetry::TRACEPARENT, value);
    }
    table
}

pub fn set_str(table: &mut FieldTable, key: &str, value: &str) {
    table.insert(
        ShortString::from(key),
        AMQPValue::LongString(value.as_bytes().to_vec().into()),
    );
}

/// Sets `key` to `at` as an AMQP timestamp (whole seconds since the Unix epoch).
pub fn set_timestamp(table: &mut FieldTable, key: &str, at: std::time::SystemTime) {
    let seconds = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    table.insert(ShortString::from(key), AMQPValue::Timestamp(seconds));
}

pub fn set_int(table: &mut FieldTable, key: &str, value: i64) {
    table.insert(ShortString::from(key), AMQPValue::LongLongInt(value));
}

/// The header `key` as text, when it is a string.
pub fn get_str(table: Option<&FieldTable>, key: &str) -> Option<String> {
    match table?.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// The header `key` as an integer, whatever integer width the broker chose.
pub fn get_int(table: Option<&FieldTable>, key: &str) -> Option<i64> {
    match table?.inner().get(key)? {
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongLongInt(v) => Some(*v),
        _ => None,
    }
}

/// The reason a dead-lettered message carries: Beckon's own, else the broker's.
pub fn dead_letter_reason(table: Option<&FieldTable>) -> Option<String> {
    get_str(table, REASON).or_else(|| get_str(table, FIRST_DEATH_REASON))
}
