//! Secrets Beckon hands out and only keeps as hashes.
//!
//! Organization access tokens and magic-link tokens are 32 random bytes. With that much
//! entropy a plain SHA-256 is a safe verifier, and unlike a password hash it costs
//! microseconds, so it never caps request throughput.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The prefix of an organization access token.
pub const ORG_TOKEN_PREFIX: &str = "oat_";
/// Length of the url-safe base64 of 32 bytes, without padding.
pub const TOKEN_BODY_LEN: usize = 43;

/// A secret in plaintext, as shown once to its owner. Its `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Plaintext(String);

impl Plaintext {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> Vec<u8> {
        hash(&self.0)
    }
}

impl std::fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Plaintext(<redacted>)")
    }
}

/// SHA-256 of a token, as stored.
pub fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn random_body() -> String {
    let mut bytes = [0u8; 32];
    // The OS random source failing is not something a caller can recover from.
    getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new organization access token: `oat_` and 43 url-safe characters.
pub fn new_org_token() -> Plaintext {
    Plaintext(format!("{ORG_TOKEN_PREFIX}{}", random_body()))
}

/// A new magic-link token: 43 url-safe characters.
pub fn new_link_token() -> Plaintext {
    Plaintext(random_body())
}

/// Whether `raw` has the shape of an organization token (so garbage never reaches the store).
pub fn looks_like_org_token(raw: &str) -> bool {
    raw.strip_prefix(ORG_TOKEN_PREFIX)
        .is_some_and(looks_like_token_body)
}

/// The prefix of a project's widget secret.
pub const WIDGET_SECRET_PREFIX: &str = "wsk_";

/// A new widget secret: `wsk_` and 43 url-safe characters. The customer's backend signs user
/// refs with it; it never reaches a browser.
pub fn new_widget_secret() -> Plaintext {
    Plaintext(format!("{WIDGET_SECRET_PREFIX}{}", random_body()))
}

/// `HMAC-SHA256(secret, user_ref)` in lower-case hex: what the customer's backend computes for
/// a signed-in user and hands to the widget (Intercom's and Formbricks' identity verification).
pub fn user_hash(secret: &str, user_ref: &str) -> String {
    let mac = user_mac(secret, user_ref).finalize().into_bytes();
    mac.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `candidate` (hex, either case) is `user_ref`'s hash under `secret`, compared in
/// constant time.
pub fn verify_user_hash(secret: &str, user_ref: &str, candidate: &str) -> bool {
    let Some(bytes) = decode_hex(candidate) else {
        return false;
    };
    user_mac(secret, user_ref).verify_slice(&bytes).is_ok()
}

fn user_mac(secret: &str, user_ref: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(user_ref.as_bytes());
    mac
}

fn decode_hex(raw: &str) -> Option<Vec<u8>> {
    if raw.len() != 64 {
        return None;
    }
    raw.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |b: u8| (b as char).to_digit(16);
            Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
        })
        .collect()
}

/// Whether `raw` has the shape of a magic-link token.
pub fn looks_like_token_body(raw: &str) -> bool {
    raw.len() == TOKEN_BODY_LEN
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_their_documented_shape_and_differ() {
        let (a, b) = (new_org_token(), new_org_token());
        assert!(looks_like_org_token(a.expose()));
        assert_ne!(a, b);
        let link = new_link_token();
        assert_eq!(link.expose().len(), 43);
        assert!(looks_like_token_body(link.expose()));
    }

    #[test]
    fn the_hash_is_sha256_and_debug_hides_the_secret() {
        let t = new_org_token();
        assert_eq!(t.hash().len(), 32);
        assert_eq!(t.hash(), hash(t.expose()));
        assert!(!format!("{t:?}").contains(t.expose()));
    }

    #[test]
    fn user_hashes_verify_only_for_their_user_and_secret() {
        // The published HMAC-SHA256 test vector (RFC 4231, test case 2).
        assert_eq!(
            user_hash("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let secret = new_widget_secret();
        assert!(secret.expose().starts_with(WIDGET_SECRET_PREFIX));
        let hash = user_hash(secret.expose(), "user-1");
        assert!(verify_user_hash(secret.expose(), "user-1", &hash));
        assert!(verify_user_hash(
            secret.expose(),
            "user-1",
            &hash.to_uppercase()
        ));
        assert!(!verify_user_hash(secret.expose(), "user-2", &hash));
        assert!(!verify_user_hash(
            new_widget_secret().expose(),
            "user-1",
            &hash
        ));
        assert!(!verify_user_hash(secret.expose(), "user-1", &hash[..62]));
        assert!(!verify_user_hash(secret.expose(), "user-1", ""));
        assert!(!verify_user_hash(
            secret.expose(),
            "user-1",
            &"é".repeat(32)
        ));
    }

    #[test]
    fn malformed_tokens_are_recognised() {
        assert!(!looks_like_org_token("oat_short"));
        assert!(!looks_like_org_token(&format!("xyz_{}", "a".repeat(43))));
        assert!(!looks_like_token_body(&"a".repeat(42)));
        assert!(!looks_like_token_body(&format!("{}!", "a".repeat(42))));
    }
}
