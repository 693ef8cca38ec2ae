//! JSON request bodies, parsed with precise error codes: `invalid_json` when the bytes are
//! not JSON, `invalid_body` (with serde's explanation) when JSON does not fit the request.

use crate::error::ApiError;
use serde::de::DeserializeOwned;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The body as a JSON value.
pub fn json_value(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("The request body is not valid JSON: {e}"),
        )
    })
}

/// The body as `T`.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value = json_value(bytes)?;
    serde_json::from_value(value).map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))
}

/// A path segment that must be an id; a malformed one names nothing, so it is a 404.
pub fn path_id(raw: &str, code: &'static str, what: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw).map_err(|_| ApiError::not_found(code, format!("No {what} {raw}")))
}

/// An optional object field of a JSON object: absent and `null` are `None`.
pub fn optional_object(
    object: &serde_json::Map<String, serde_json::Value>,
    field: &str,
) -> Result<Option<serde_json::Value>, ApiError> {
    match object.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v @ serde_json::Value::Object(_)) => Ok(Some(v.clone())),
        Some(_) => Err(ApiError::bad_request(
            "invalid_body",
            format!("{field} must be an object"),
        )),
    }
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
