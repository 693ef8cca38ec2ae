#![doc = include_str!("../README.md")]
//!
//! # Layout
//! - [`payload`]: the webhook body and the event type catalogue.
//! - [`format`]: the payload formats a subscription may receive, rendered from that body.
//! - [`signing`]: `whsec_` secrets and Standard Webhooks signatures.
//! - [`sealed`]: encryption at rest under the deployment's key.
//! - [`policy`]: retry policies.
//! - [`guard`]: which addresses a webhook may reach.
//! - [`sender`]: the HTTP client.

pub mod format;
pub mod guard;
pub mod payload;
pub mod policy;
pub mod sealed;
pub mod sender;
pub mod signing;

/// The configuration every service that touches webhooks shares, from the environment.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Neither key setting is given.
    #[error(
        "BECKON_SECRET_KEYS or BECKON_SECRET_KEY is required: the base64 of 32 random bytes (`openssl rand -base64 32`)"
    )]
    MissingKey,
    /// Both key settings are given, so which key seals would be a guess.
    #[error(
        "set BECKON_SECRET_KEYS or BECKON_SECRET_KEY, not both: put every key in BECKON_SECRET_KEYS, newest first"
    )]
    BothKeySettings,
    /// A key of the setting named is malformed.
    #[error("{setting} is invalid")]
    BadKey {
        setting: &'static str,
        #[source]
        source: sealed::SealError,
    },
    #[error("BECKON_WEBHOOK_ALLOWED_CIDRS={0:?} is not a comma-separated list of address ranges")]
    BadAllowList(String),
}

/// The deployment's sealing keys from `BECKON_SECRET_KEYS` (comma-separated, newest first) or
/// `BECKON_SECRET_KEY` (one key); exactly one of them must be set.
pub fn sealing_keys_from_env() -> Result<sealed::SealingKeys, SettingsError> {
    sealing_keys(
        std::env::var("BECKON_SECRET_KEYS").ok().as_deref(),
        std::env::var("BECKON_SECRET_KEY").ok().as_deref(),
    )
}

/// The sealing keys from the two settings' values; an empty value counts as unset.
fn sealing_keys(
    list: Option<&str>,
    single: Option<&str>,
) -> Result<sealed::SealingKeys, SettingsError> {
    let list = list.filter(|v| !v.trim().is_empty());
    let single = single.filter(|v| !v.trim().is_empty());
    let (setting, keys) = match (list, single) {
        (Some(_), Some(_)) => return Err(SettingsError::BothKeySettings),
        (None, None) => return Err(SettingsError::MissingKey),
        (Some(list), None) => (
            "BECKON_SECRET_KEYS",
            sealed::SealingKeys::from_base64_list(list),
        ),
        // A comma in the single key is a malformed key, not a list in disguise.
        (None, Some(single)) if single.contains(',') => (
            "BECKON_SECRET_KEY",
            Err(sealed::SealError::BadKey { position: 1 }),
        ),
        (None, Some(single)) => (
            "BECKON_SECRET_KEY",
            sealed::SealingKeys::from_base64_list(single),
        ),
    };
    keys.map_err(|source| SettingsError::BadKey { setting, source })
}

/// The sealing keys (see [`sealing_keys_from_env`]) and `BECKON_WEBHOOK_ALLOWED_CIDRS` (default
/// none).
pub fn settings_from_env() -> Result<(sealed::SealingKeys, guard::AllowList), SettingsError> {
    let keys = sealing_keys_from_env()?;
    let raw = std::env::var("BECKON_WEBHOOK_ALLOWED_CIDRS").unwrap_or_default();
    let allow = guard::AllowList::parse(&raw).ok_or(SettingsError::BadAllowList(raw))?;
    Ok((keys, allow))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn key(byte: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([byte; 32])
    }

    #[test]
    fn one_key_or_a_list_of_keys_is_read_and_the_list_seals_with_its_first() {
        let single = sealing_keys(None, Some(&key(1))).unwrap();
        let list = sealing_keys(Some(&format!("{},{}", key(2), key(1))), None).unwrap();
        let sealed = single.seal(b"x");
        assert_eq!(list.open(&sealed).unwrap(), b"x");
        assert_eq!(
            list.newest_id(),
            sealing_keys(None, Some(&key(2))).unwrap().newest_id()
        );
        // An empty setting, as an unfilled template leaves it, counts as unset.
        assert!(sealing_keys(Some(""), Some(&key(1))).is_ok());
    }

    #[test]
    fn the_compose_files_development_key_is_a_usable_key() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/compose.yaml");
        let compose = std::fs::read_to_string(&path).unwrap();
        let setting = |name: &str| {
            compose.lines().find_map(|line| {
                let value = line.trim().strip_prefix(name)?.strip_prefix(':')?;
                Some(value.trim().to_owned())
            })
        };
        let list = setting("BECKON_SECRET_KEYS");
        let single = setting("BECKON_SECRET_KEY");
        assert!(
            list.is_some() || single.is_some(),
            "compose.yaml sets no key"
        );
        if let Err(e) = sealing_keys(list.as_deref(), single.as_deref()) {
            panic!(
                "the services would refuse compose.yaml's key: {e}: {:?}",
                std::error::Error::source(&e)
            );
        }
    }

    #[test]
    fn both_settings_or_neither_is_refused() {
        assert!(matches!(
            sealing_keys(Some(&key(1)), Some(&key(1))),
            Err(SettingsError::BothKeySettings)
        ));
        assert!(matches!(
            sealing_keys(None, None),
            Err(SettingsError::MissingKey)
        ));
        assert!(matches!(
            sealing_keys(None, Some(&format!("{},{}", key(2), key(1)))),
            Err(SettingsError::BadKey {
                setting: "BECKON_SECRET_KEY",
                ..
            })
        ));
        assert!(matches!(
            sealing_keys(Some(&format!("{},short", key(1))), None),
            Err(SettingsError::BadKey {
                setting: "BECKON_SECRET_KEYS",
                source: sealed::SealError::BadKey { position: 2 }
            })
        ));
    }
}
