//! Encryption at rest under the deployment's key (`BECKON_SECRET_KEY`): ChaCha20-Poly1305 with
//! a random nonce per value, stored as `nonce || ciphertext`. Signing secrets need their
//! plaintext to sign, so they are sealed, not hashed.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use beckon_domain::envelope::{CarriedLink, LinkUrl};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};

const NONCE_BYTES: usize = 12;

/// The deployment's encryption key.
#[derive(Clone)]
pub struct SealingKey(ChaCha20Poly1305);

/// The key is missing or malformed, or a sealed value does not open under it.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "the key must be the base64 of exactly 32 bytes (generate one with `openssl rand -base64 32`)"
    )]
    BadKey,
    #[error("a sealed value could not be opened: wrong key or corrupt data")]
    Open,
}

impl SealingKey {
    /// From the base64 of 32 bytes.
    pub fn from_base64(raw: &str) -> Result<Self, SealError> {
        let bytes = STANDARD.decode(raw.trim()).map_err(|_| SealError::BadKey)?;
        if bytes.len() != 32 {
            return Err(SealError::BadKey);
        }
        ChaCha20Poly1305::new_from_slice(&bytes)
            .map(Self)
            .map_err(|_| SealError::BadKey)
    }

    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).expect("the operating system's random source is unavailable");
        let ciphertext = self
            .0
            .encrypt(&Nonce::from(nonce), plaintext)
            .expect("encrypting into a vector cannot fail");
        let mut out = nonce.to_vec();
        out.extend(ciphertext);
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < NONCE_BYTES {
            return Err(SealError::Open);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| SealError::Open)?;
        self.0
            .decrypt(&Nonce::from(nonce), ciphertext)
            .map_err(|_| SealError::Open)
    }
}

impl SealingKey {
    /// A magic link sealed to travel between services.
    pub fn seal_link(&self, url: &str) -> CarriedLink {
        CarriedLink::Sealed {
            magic_link_sealed: STANDARD.encode(self.seal(url.as_bytes())),
        }
    }

    /// A magic link that travelled sealed, in plaintext again.
    pub fn open_link(&self, link: &CarriedLink) -> Result<LinkUrl, SealError> {
        let magic_link_url = match link {
            CarriedLink::Sealed { magic_link_sealed } => {
                let sealed = STANDARD
                    .decode(magic_link_sealed)
                    .map_err(|_| SealError::Open)?;
                String::from_utf8(self.open(&sealed)?).map_err(|_| SealError::Open)?
            }
            CarriedLink::Plain { magic_link_url } => magic_link_url.clone(),
        };
        Ok(LinkUrl { magic_link_url })
    }
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SealingKey {
        SealingKey::from_base64(&STANDARD.encode([7u8; 32])).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_only_under_its_key_and_is_not_the_plaintext() {
        let sealed = key().seal(b"whsec_secret");
        assert!(!sealed.windows(12).any(|w| w == b"whsec_secret"));
        assert_eq!(key().open(&sealed).unwrap(), b"whsec_secret");
        let other = SealingKey::from_base64(&STANDARD.encode([8u8; 32])).unwrap();
        assert!(other.open(&sealed).is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(key().open(&tampered).is_err());
    }

    #[test]
    fn sealing_twice_gives_different_ciphertexts() {
        assert_ne!(key().seal(b"x"), key().seal(b"x"));
    }

    #[test]
    fn a_sealed_link_does_not_show_its_url_and_opens_under_the_key_only() {
        let url = "https://beckon.example/surveys/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let link = key().seal_link(url);
        let wire = serde_json::to_string(&link).unwrap();
        assert!(!wire.contains("AAAAAAAAAA") && wire.contains("magic_link_sealed"));
        assert_eq!(key().open_link(&link).unwrap().magic_link_url, url);
        let other = SealingKey::from_base64(&STANDARD.encode([8u8; 32])).unwrap();
        assert!(other.open_link(&link).is_err());
        let garbage = CarriedLink::Sealed {
            magic_link_sealed: "not base64!".into(),
        };
        assert!(key().open_link(&garbage).is_err());
        // A link from before sealing still reads.
        let plain: CarriedLink = serde_json::from_str(r#"{"magic_link_url": "u"}"#).unwrap();
        assert_eq!(key().open_link(&plain).unwrap().magic_link_url, "u");
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        assert!(SealingKey::from_base64("short").is_err());
        assert!(SealingKey::from_base64(&STANDARD.encode([1u8; 16])).is_err());
    }
}
