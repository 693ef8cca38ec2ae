//! What an organization access token may do.

use serde::{Deserialize, Serialize};

/// A token's permission. A token holds one or more; `admin` covers the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Fire events from a product backend: `events/send`, `events/batch`, `lifecycle/dispatch`,
    /// `users/upsert`, and reading or cancelling the organization's triggers by id.
    Send,
    /// Read everything (every `GET`), change nothing.
    Read,
    /// Everything: projects, surveys, webhooks, tokens.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Send, Scope::Read, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Send => "send",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// Whether a token holding `held` may do what needs `needed`.
pub fn grants(held: &[Scope], needed: Scope) -> bool {
    held.iter().any(|&s| s == Scope::Admin || s == needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_covers_every_scope_and_the_others_only_themselves() {
        for needed in Scope::ALL {
            assert!(grants(&[Scope::Admin], needed));
            assert_eq!(grants(&[Scope::Send], needed), needed == Scope::Send);
            assert_eq!(grants(&[Scope::Read], needed), needed == Scope::Read);
        }
        assert!(!grants(&[], Scope::Read));
        assert!(grants(&[Scope::Send, Scope::Read], Scope::Read));
        assert_eq!(Scope::parse("send"), Some(Scope::Send));
        assert_eq!(Scope::parse("Send"), None);
    }
}
