//! The customer's stable identifier of one of its users.

use serde::{Deserialize, Serialize};

/// Longest `user_ref` accepted, in characters.
pub const MAX_LEN: usize = 256;

/// A non-empty, trimmed user identifier of at most [`MAX_LEN`] characters without control
/// characters. Built only by [`UserRef::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(try_from = "String", into = "String")]
#[schemars(extend("minLength" = 1, "maxLength" = 256))]
pub struct UserRef(String);

/// Why a string is not a valid [`UserRef`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserRefError {
    /// Empty, or only whitespace.
    #[error("user_ref must not be empty")]
    Empty,
    /// More than [`MAX_LEN`] characters.
    #[error("user_ref must be at most {MAX_LEN} characters")]
    TooLong,
    /// Holds a control character (a newline, a NUL, ...).
    #[error("user_ref must not contain control characters")]
    ControlCharacter,
}

impl UserRef {
    /// Validates `raw`: surrounding whitespace is not part of the identifier.
    pub fn parse(raw: &str) -> Result<Self, UserRefError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(UserRefError::Empty);
        }
        if trimmed.chars().count() > MAX_LEN {
            return Err(UserRefError::TooLong);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(UserRefError::ControlCharacter);
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserRef {
    type Error = UserRefError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<UserRef> for String {
    fn from(value: UserRef) -> Self {
        value.0
    }
}

impl std::fmt::Display for UserRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_or_blank_user_ref_is_rejected() {
        assert_eq!(UserRef::parse(""), Err(UserRefError::Empty));
        assert_eq!(UserRef::parse("   "), Err(UserRefError::Empty));
    }

    #[test]
    fn surrounding_whitespace_is_trimmed() {
        assert_eq!(UserRef::parse("  user_1 ").unwrap().as_str(), "user_1");
    }

    #[test]
    fn control_characters_and_overlong_refs_are_rejected() {
        assert_eq!(UserRef::parse("a\nb"), Err(UserRefError::ControlCharacter));
        assert_eq!(
            UserRef::parse(&"x".repeat(MAX_LEN + 1)),
            Err(UserRefError::TooLong)
        );
        assert!(UserRef::parse(&"x".repeat(MAX_LEN)).is_ok());
    }
}
