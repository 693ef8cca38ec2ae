//! Encryption at rest under the deployment's keys (`BECKON_SECRET_KEYS`, newest first, or the
//! single `BECKON_SECRET_KEY`): ChaCha20-Poly1305 with a random nonce per value. Signing
//! secrets need their plaintext to sign, so they are sealed, not hashed.
//!
//! A value is sealed under the newest key as
//!
//! ```text
//! 0xB5 | key id (8 bytes) | nonce (12 bytes) | ciphertext and tag
//! ```
//!
//! where the key id is the first 8 bytes of SHA-256("beckon sealing key id" | key) and the
//! first 9 bytes are authenticated as associated data. The id says which key opens the value
//! and lets `beckon keys reseal` find, in SQL, every value not under the newest key.
//!
//! Values sealed before keys had ids are `nonce | ciphertext and tag`. A nonce is random, so
//! such a value may begin with the marker byte too; it is told apart by its tag: a value opens
//! as the new format only when its id names a configured key and the tag verifies, and
//! anything else is tried as the old format under every key, newest first.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use beckon_domain::envelope::{CarriedLink, LinkUrl};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use sha2::{Digest as _, Sha256};

const NONCE_BYTES: usize = 12;
/// The first byte of a value that carries its key's id.
const MARKER: u8 = 0xB5;
const KEY_ID_BYTES: usize = 8;
/// The marker and the key id: what every value sealed under one key begins with.
pub const HEADER_BYTES: usize = 1 + KEY_ID_BYTES;

/// The short, public name of a key: the first bytes of a hash of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyId([u8; KEY_ID_BYTES]);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// One key and its id.
#[derive(Clone)]
struct Key {
    id: KeyId,
    cipher: ChaCha20Poly1305,
}

impl Key {
    fn from_base64(raw: &str) -> Option<Self> {
        let bytes = STANDARD.decode(raw.trim()).ok()?;
        if bytes.len() != 32 {
            return None;
        }
        let digest = Sha256::new()
            .chain_update(b"beckon sealing key id")
            .chain_update(&bytes)
            .finalize();
        let mut id = [0u8; KEY_ID_BYTES];
        id.copy_from_slice(&digest[..KEY_ID_BYTES]);
        let cipher = ChaCha20Poly1305::new_from_slice(&bytes).ok()?;
        Some(Self {
            id: KeyId(id),
            cipher,
        })
    }

    fn header(&self) -> [u8; HEADER_BYTES] {
        let mut header = [MARKER; HEADER_BYTES];
        header[1..].copy_from_slice(&self.id.0);
        header
    }

    fn open_with_id(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        let (header, rest) = sealed.split_at_checked(HEADER_BYTES)?;
        if header != self.header() {
            return None;
        }
        let (nonce, ciphertext) = rest.split_at_checked(NONCE_BYTES)?;
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().ok()?;
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: header,
                },
            )
            .ok()
    }

    fn open_without_id(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        let (nonce, ciphertext) = sealed.split_at_checked(NONCE_BYTES)?;
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().ok()?;
        self.cipher.decrypt(&Nonce::from(nonce), ciphertext).ok()
    }
}

/// The deployment's keys, newest first: values are sealed under the newest and open under any.
#[derive(Clone)]
pub struct SealingKeys {
    newest: Key,
    older: Vec<Key>,
}

/// A key is malformed or missing, or a sealed value does not open under any key.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// A key of the list is not the base64 of 32 bytes (`position` counts from 1).
    #[error(
        "key {position} must be the base64 of exactly 32 bytes (generate one with `openssl rand -base64 32`)"
    )]
    BadKey { position: usize },
    /// The value is corrupt, or sealed under a key that is not configured.
    #[error("a sealed value could not be opened: no configured key opens it, or it is corrupt")]
    Open,
}

impl SealingKeys {
    /// From comma-separated base64 keys of 32 bytes each, newest first.
    pub fn from_base64_list(raw: &str) -> Result<Self, SealError> {
        let mut keys = raw
            .split(',')
            .enumerate()
            .map(|(i, k)| Key::from_base64(k).ok_or(SealError::BadKey { position: i + 1 }));
        let newest = keys
            .next()
            .unwrap_or(Err(SealError::BadKey { position: 1 }))?;
        let older = keys.collect::<Result<Vec<_>, _>>()?;
        Ok(Self { newest, older })
    }

    /// Every key, newest first.
    fn all(&self) -> impl Iterator<Item = &Key> {
        std::iter::once(&self.newest).chain(&self.older)
    }

    /// The id of the key new values are sealed under.
    pub fn newest_id(&self) -> KeyId {
        self.newest.id
    }

    /// What every value sealed under the newest key begins with: a value that does not is
    /// one for `beckon keys reseal`.
    pub fn newest_header(&self) -> [u8; HEADER_BYTES] {
        self.newest.header()
    }

    /// Seals under the newest key.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let key = &self.newest;
        let header = key.header();
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).expect("the operating system's random source is unavailable");
        let ciphertext = key
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &header,
                },
            )
            .expect("encrypting into a vector cannot fail");
        let mut out = Vec::with_capacity(HEADER_BYTES + NONCE_BYTES + ciphertext.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&nonce);
        out.extend(ciphertext);
        out
    }

    /// Opens a value sealed under any of the keys, with or without a key id.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let named = match sealed {
            [MARKER, rest @ ..] => self.all().find(|k| rest.starts_with(&k.id.0)),
            _ => None,
        };
        named
            .and_then(|key| key.open_with_id(sealed))
            .or_else(|| self.all().find_map(|key| key.open_without_id(sealed)))
            .ok_or(SealError::Open)
    }

    /// Opens a value and seals its plaintext again under the newest key.
    pub fn reseal(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        self.open(sealed).map(|plaintext| self.seal(&plaintext))
    }
}

impl SealingKeys {
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

impl std::fmt::Debug for SealingKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self.all().map(|k| k.id.to_string()).collect();
        write!(f, "SealingKeys(<redacted>, ids {ids:?})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base64(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    fn keys(list: &[u8]) -> SealingKeys {
        let raw: Vec<String> = list.iter().map(|b| base64(*b)).collect();
        SealingKeys::from_base64_list(&raw.join(",")).unwrap()
    }

    /// A value as it was sealed before keys had ids: `nonce | ciphertext`.
    fn sealed_without_id(key: u8, nonce: [u8; NONCE_BYTES], plaintext: &[u8]) -> Vec<u8> {
        let cipher = ChaCha20Poly1305::new_from_slice(&[key; 32]).unwrap();
        let mut out = nonce.to_vec();
        out.extend(cipher.encrypt(&Nonce::from(nonce), plaintext).unwrap());
        out
    }

    #[test]
    fn a_sealed_value_opens_only_under_its_key_and_is_not_the_plaintext() {
        let sealed = keys(&[7]).seal(b"whsec_secret");
        assert!(!sealed.windows(12).any(|w| w == b"whsec_secret"));
        assert_eq!(keys(&[7]).open(&sealed).unwrap(), b"whsec_secret");
        assert!(keys(&[8]).open(&sealed).is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(keys(&[7]).open(&tampered).is_err());
    }

    #[test]
    fn a_value_carries_the_id_of_the_newest_key_and_opens_under_any_list_holding_it() {
        let sealed = keys(&[2, 1]).seal(b"body");
        assert_eq!(sealed[..HEADER_BYTES], keys(&[2]).newest_header());
        assert_ne!(keys(&[2]).newest_id(), keys(&[1]).newest_id());
        assert_eq!(keys(&[2]).open(&sealed).unwrap(), b"body");
        assert_eq!(keys(&[3, 1, 2]).open(&sealed).unwrap(), b"body");
        assert!(keys(&[1]).open(&sealed).is_err());
    }

    #[test]
    fn the_key_id_is_authenticated() {
        // The same ciphertext relabelled as another configured key's does not open, and a
        // value is never opened as the old format just because its id was damaged.
        let sealed = keys(&[2]).seal(b"body");
        let mut relabelled = sealed.clone();
        relabelled[..HEADER_BYTES].copy_from_slice(&keys(&[1]).newest_header());
        assert!(keys(&[1, 2]).open(&relabelled).is_err());
    }

    #[test]
    fn values_sealed_before_key_ids_open_under_any_configured_key() {
        let old = sealed_without_id(1, [9; NONCE_BYTES], b"whsec_old");
        assert_eq!(keys(&[1]).open(&old).unwrap(), b"whsec_old");
        assert_eq!(keys(&[2, 1]).open(&old).unwrap(), b"whsec_old");
        assert!(keys(&[2]).open(&old).is_err());
    }

    #[test]
    fn an_old_value_whose_nonce_looks_like_a_header_still_opens() {
        // One old value in 256 starts with the marker; even one whose next bytes happen to be
        // a configured key's id opens, because only its tag decides.
        let mut nonce = [0u8; NONCE_BYTES];
        nonce[..HEADER_BYTES].copy_from_slice(&keys(&[1]).newest_header());
        let old = sealed_without_id(1, nonce, b"token");
        assert_eq!(old[0], MARKER);
        assert_eq!(keys(&[1]).open(&old).unwrap(), b"token");
        assert_eq!(keys(&[2, 1]).open(&old).unwrap(), b"token");
    }

    #[test]
    fn resealing_moves_a_value_to_the_newest_key() {
        let old = sealed_without_id(1, [4; NONCE_BYTES], b"secret");
        let under_a = keys(&[1]).seal(b"secret");
        let rotated = keys(&[2, 1]);
        for value in [old, under_a] {
            let resealed = rotated.reseal(&value).unwrap();
            assert_eq!(resealed[..HEADER_BYTES], rotated.newest_header());
            assert_eq!(keys(&[2]).open(&resealed).unwrap(), b"secret");
        }
        assert!(rotated.reseal(b"garbage").is_err());
    }

    #[test]
    fn sealing_twice_gives_different_ciphertexts() {
        assert_ne!(keys(&[7]).seal(b"x"), keys(&[7]).seal(b"x"));
    }

    #[test]
    fn a_sealed_link_does_not_show_its_url_and_opens_under_the_key_only() {
        let url = "https://beckon.example/surveys/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let link = keys(&[7]).seal_link(url);
        let wire = serde_json::to_string(&link).unwrap();
        assert!(!wire.contains("AAAAAAAAAA") && wire.contains("magic_link_sealed"));
        assert_eq!(keys(&[7]).open_link(&link).unwrap().magic_link_url, url);
        assert_eq!(keys(&[9, 7]).open_link(&link).unwrap().magic_link_url, url);
        assert!(keys(&[8]).open_link(&link).is_err());
        let garbage = CarriedLink::Sealed {
            magic_link_sealed: "not base64!".into(),
        };
        assert!(keys(&[7]).open_link(&garbage).is_err());
        // A link from before sealing still reads.
        let plain: CarriedLink = serde_json::from_str(r#"{"magic_link_url": "u"}"#).unwrap();
        assert_eq!(keys(&[7]).open_link(&plain).unwrap().magic_link_url, "u");
    }

    #[test]
    fn every_key_must_be_32_bytes_of_base64() {
        assert!(matches!(
            SealingKeys::from_base64_list("short"),
            Err(SealError::BadKey { position: 1 })
        ));
        let list = format!("{},{}", base64(1), STANDARD.encode([1u8; 16]));
        assert!(matches!(
            SealingKeys::from_base64_list(&list),
            Err(SealError::BadKey { position: 2 })
        ));
        assert!(SealingKeys::from_base64_list(&format!(" {} , {} ", base64(1), base64(2))).is_ok());
    }

    #[test]
    fn debug_shows_key_ids_but_never_keys() {
        let shown = format!("{:?}", keys(&[1, 2]));
        assert!(shown.contains(&keys(&[1]).newest_id().to_string()));
        assert!(!shown.contains(&base64(1)));
    }
}
