//! JSON request bodies, parsed with precise error codes: `invalid_json` when the bytes are
//! not JSON, `invalid_body` (with serde's explanation) when JSON does not fit the request.

use crate::error::ApiError;
use serde::de::DeserializeOwned;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// How long a client may take to send a request body, unless configured.
pub const DEFAULT_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Middleware: reads the whole request body (at most [`MAX_BODY_BYTES`]) within the body
/// timeout before any handler runs. A client that stalls mid-body gets 408 and a closed
/// connection instead of holding a request open for ever; a body over the limit gets 413 without
/// being read to its end. Memory per request stays bounded by the limit. A query string
/// holding an encoded NUL is refused here too, once for every route.
pub async fn bounded(
    mut req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<
    actix_web::dev::ServiceResponse<actix_web::body::EitherBody<impl actix_web::body::MessageBody>>,
    actix_web::Error,
> {
    use actix_web::HttpMessage as _;
    use futures_util::StreamExt as _;
    let timeout = req
        .app_data::<actix_web::web::Data<crate::AppState>>()
        .map_or(DEFAULT_BODY_TIMEOUT, |s| s.body_timeout);
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let nul_in_query = req.query_string().to_ascii_lowercase().contains("%00");
    let error = if nul_in_query {
        // PostgreSQL cannot store or compare text holding NUL; no parameter needs one.
        ApiError::bad_request(
            "invalid_query",
            "The query string must not contain NUL characters (%00).",
        )
    } else if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        too_large()
    } else {
        let mut payload = req.take_payload();
        let read = tokio::time::timeout(timeout, async {
            let mut body = actix_web::web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| {
                    ApiError::bad_request(
                        "invalid_body",
                        format!("The request body could not be read: {e}"),
                    )
                })?;
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body.freeze())
        })
        .await;
        match read {
            Ok(Ok(bytes)) => {
                req.set_payload(actix_web::dev::Payload::from(bytes));
                return Ok(next.call(req).await?.map_into_left_body());
            }
            Ok(Err(err)) => err,
            Err(_) => ApiError::new(
                actix_web::http::StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "The request body did not arrive within {} ms.",
                    timeout.as_millis()
                ),
            ),
        }
    };
    let mut response = actix_web::ResponseError::error_response(&error);
    // What is left of the body is never read: the connection cannot carry another request.
    response
        .head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    Ok(req.into_response(response).map_into_right_body())
}

fn too_large() -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("The request body is larger than {MAX_BODY_BYTES} bytes."),
    )
}

/// The body as a JSON value. Text holding a NUL character (`\u0000`) is refused here, since
/// PostgreSQL cannot store it in text or jsonb.
pub fn json_value(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    let value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("The request body is not valid JSON: {e}"),
        )
    })?;
    if holds_nul(&value) {
        return Err(ApiError::bad_request(
            "invalid_body",
            "Text in the body must not contain NUL characters (\\u0000).",
        ));
    }
    Ok(value)
}

fn holds_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    // Iterative: the parser already bounds the depth, but a walk needs no stack of its own.
    let mut pending = vec![value];
    while let Some(v) = pending.pop() {
        match v {
            Value::String(s) if s.contains('\0') => return true,
            Value::Array(items) => pending.extend(items),
            Value::Object(map) => {
                for (k, v) in map {
                    if k.contains('\0') {
                        return true;
                    }
                    pending.push(v);
                }
            }
            _ => {}
        }
    }
    false
}

/// The body, which must be a JSON object, as `T`. (Serde would also read a struct from an
/// array of its fields in order; no request body is documented that way.)
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value = json_value(bytes)?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "The body must be a JSON object.",
        ));
    }
    serde_json::from_value(value).map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))
}

/// The body, which must be a JSON object, as `T`. A field that does not fit is answered 400
/// naming it by its path and saying what is wrong (`user_info.email: invalid type: integer
/// `5`, expected a string`), under the code `code_of` gives for that path (`invalid_body` for
/// most fields; a field with a code of its own, such as a user ref, keeps it).
pub fn parse_fields<T: DeserializeOwned>(
    bytes: &[u8],
    code_of: impl Fn(&str) -> &'static str,
) -> Result<T, ApiError> {
    fields(json_value(bytes)?, code_of)
}

/// [`parse_fields`] for a value already read from a body (an element of a batch): the
/// pointers of its errors are relative to `value`.
pub fn fields<T: DeserializeOwned>(
    value: serde_json::Value,
    code_of: impl Fn(&str) -> &'static str,
) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "The body must be a JSON object.",
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        };
        let error = ApiError::bad_request(code_of(&path), message);
        if path == "." {
            error
        } else {
            error.at(pointer(e.path()))
        }
    })
}

/// A field that may be set to null (`#[serde(default, deserialize_with = "body::nullable")]`):
/// absent is `None`, null is `Some(None)`.
pub fn nullable<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(de).map(Some)
}

/// A path into a body as a JSON pointer (RFC 6901): `a.b[1]` is `/a/b/1`.
fn pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        out.push('/');
        match segment {
            Segment::Seq { index } => out.push_str(&index.to_string()),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                out.push_str(&key.replace('~', "~0").replace('/', "~1"));
            }
            Segment::Unknown => out.push('?'),
        }
    }
    out
}

/// A struct of a request body that must arrive as a JSON object. (Serde would also read a
/// struct from an array of its fields in order, which no request documents: `"user_info":
/// ["u1"]` would name a user.) Fields that do not fit are still named by their path.
#[derive(Debug)]
pub struct Object<T>(pub T);

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields<T>(std::marker::PhantomData<T>);
        impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Fields<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(Fields(std::marker::PhantomData))
            .map(Self)
    }
}

/// Deepest nesting of a [`JsonObject`], the object itself counting as one level.
///
/// The parser alone refuses only what passes 127 levels in the whole body. But such a value
/// does not stay at the depth it arrived at: it travels on in envelopes and webhook bodies up
/// to three levels further down (`data.trigger.parameters`, `data.user.attributes`), and every
/// consumer parses those with the same limit. A value accepted near it would become a message
/// no consumer can read — dead-lettered, its trigger failed, its webhook never sent — so it is
/// refused here, far below: 32 levels is beyond any real payload.
pub const MAX_NESTING: usize = 32;

/// A JSON object a request hands on as it came: an event's `event_data`, `variables` and
/// `source`, a user's `custom_fields`. Nested at most [`MAX_NESTING`] levels deep.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JsonObject(serde_json::Map<String, serde_json::Value>);

impl JsonObject {
    /// `map`, which a handler reading fields by hand found under `field`, if it nests at most
    /// [`MAX_NESTING`] levels; otherwise 400 `invalid_body` naming the field.
    pub fn bounded(
        field: &str,
        map: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, ApiError> {
        if nesting(&map) > MAX_NESTING {
            return Err(ApiError::bad_request(
                "invalid_body",
                format!("{field}: {}", too_deep()),
            ));
        }
        Ok(Self(map))
    }

    pub fn into_map(self) -> serde_json::Map<String, serde_json::Value> {
        self.0
    }

    pub fn into_value(self) -> serde_json::Value {
        serde_json::Value::Object(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for JsonObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{Error, Unexpected};
        use serde_json::Value;
        match Value::deserialize(deserializer)? {
            Value::Object(map) => {
                if nesting(&map) > MAX_NESTING {
                    return Err(D::Error::custom(too_deep()));
                }
                Ok(Self(map))
            }
            other => {
                let unexpected = match &other {
                    Value::Null => Unexpected::Unit,
                    Value::Bool(b) => Unexpected::Bool(*b),
                    Value::Number(_) => Unexpected::Other("number"),
                    Value::String(s) => Unexpected::Str(s),
                    Value::Array(_) => Unexpected::Seq,
                    Value::Object(_) => Unexpected::Map,
                };
                Err(D::Error::invalid_type(unexpected, &"an object"))
            }
        }
    }
}

fn too_deep() -> String {
    format!("nested more than {MAX_NESTING} levels deep")
}

/// How many levels of objects and arrays `object` nests, itself included.
fn nesting(object: &serde_json::Map<String, serde_json::Value>) -> usize {
    use serde_json::Value;
    // Iterative, like `holds_nul`: a walk needs no stack of its own.
    let mut deepest = 1;
    let mut pending: Vec<(&Value, usize)> = object.values().map(|v| (v, 2)).collect();
    while let Some((value, depth)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        deepest = deepest.max(depth);
        pending.extend(children.map(|v| (v, depth + 1)));
    }
    deepest
}

/// A path segment that must be an id; a malformed one names nothing, so it is a 404.
pub fn path_id(raw: &str, code: &'static str, what: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw)
        .map_err(|_| ApiError::not_found(code, format!("No {what} {}", shown(raw))))
}

/// Longest part of a caller's value an error message repeats, in characters.
const SHOWN_CHARS: usize = 64;

/// A caller's value as an error message repeats it: at most 64 characters, control
/// characters as `?`, so a message stays short and printable whatever was sent.
pub fn shown(raw: &str) -> String {
    let mut out: String = raw
        .chars()
        .take(SHOWN_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if raw.chars().nth(SHOWN_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// An optional string field of a JSON object: absent and `null` are `None`.
pub fn optional_string(
    object: &serde_json::Map<String, serde_json::Value>,
    field: &str,
) -> Result<Option<String>, ApiError> {
    match object.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(
            "invalid_body",
            format!("{field} must be a string"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}1{}", "{\"a\":".repeat(levels), "}".repeat(levels))
    }

    #[test]
    fn an_object_nests_at_most_max_nesting_levels() {
        let parse = |json: &str| serde_json::from_str::<JsonObject>(json).map(|o| nesting(&o.0));
        assert_eq!(parse("{}").unwrap(), 1);
        assert_eq!(parse(r#"{"a": [1, {"b": []}], "c": 2}"#).unwrap(), 4);
        assert_eq!(parse(&nested(MAX_NESTING)).unwrap(), MAX_NESTING);
        let err = parse(&nested(MAX_NESTING + 1)).unwrap_err().to_string();
        assert!(err.contains("nested more than 32 levels deep"), "{err}");
        let err = parse("[1]").unwrap_err().to_string();
        assert!(err.contains("expected an object"), "{err}");
    }

    #[test]
    fn a_field_that_does_not_fit_is_named_by_its_path() {
        #[derive(Debug, serde::Deserialize)]
        struct Outer {
            #[expect(dead_code, reason = "only parsed")]
            inner: Option<Inner>,
        }
        #[derive(Debug, serde::Deserialize)]
        struct Inner {
            #[expect(dead_code, reason = "only parsed")]
            data: Option<JsonObject>,
        }
        let body = format!(r#"{{"inner": {{"data": {}}}}}"#, nested(40));
        let err = parse_fields::<Outer>(body.as_bytes(), |path| {
            if path == "inner.data" {
                "deep"
            } else {
                "other"
            }
        })
        .unwrap_err();
        assert_eq!(err.code, "deep");
        assert_eq!(err.message, "inner.data: nested more than 32 levels deep");
        let err = parse_fields::<Outer>(b"[]", |_| "other").unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            ("invalid_body", "The body must be a JSON object.")
        );
    }

    #[test]
    fn a_struct_must_arrive_as_an_object_and_its_fields_keep_their_path() {
        #[derive(Debug, serde::Deserialize)]
        struct Outer {
            inner: Option<Object<Inner>>,
        }
        #[derive(Debug, serde::Deserialize)]
        struct Inner {
            name: Option<String>,
        }
        let parsed: Outer = parse_fields(br#"{"inner": {"name": "Ada"}}"#, |_| "x").unwrap();
        assert_eq!(parsed.inner.unwrap().0.name.as_deref(), Some("Ada"));
        let parsed: Outer = parse_fields(br#"{"inner": null}"#, |_| "x").unwrap();
        assert!(parsed.inner.is_none());
        let err = parse_fields::<Outer>(br#"{"inner": ["Ada"]}"#, |_| "x").unwrap_err();
        assert_eq!(
            err.message,
            "inner: invalid type: sequence, expected an object"
        );
        let err = parse_fields::<Outer>(br#"{"inner": {"name": 5}}"#, |_| "x").unwrap_err();
        assert_eq!(
            err.message,
            "inner.name: invalid type: integer `5`, expected a string"
        );
    }

    #[test]
    fn a_callers_value_is_repeated_short_and_printable() {
        assert_eq!(shown("0193a6b2-not-an-id"), "0193a6b2-not-an-id");
        assert_eq!(shown("%ZZ\u{0}\r\nx"), "%ZZ???x");
        let long = "é".repeat(6000);
        assert_eq!(shown(&long), "é".repeat(64) + "…");
        assert_eq!(shown(&"a".repeat(64)), "a".repeat(64));
        let err = path_id(&"x".repeat(6000), "token_not_found", "token").unwrap_err();
        assert!(err.message.chars().count() < 80, "{}", err.message);
    }
}
