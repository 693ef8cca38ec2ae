//! The lifecycle event a product backend fires about one of its users.
//!
//! On the wire an event is one of the predefined snake-case strings or `{"custom": "name"}`;
//! matching is exact equality, so `{"custom": "trial_expired"}` is not `"trial_expired"`.

use serde::{Deserialize, Serialize};

/// Longest custom event name accepted, in characters.
pub const MAX_CUSTOM_NAME_LEN: usize = 128;

/// A lifecycle event kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LifecycleEvent {
    TrialExpired,
    TrialEndingSoon,
    TrialCancelled,
    SubscriptionCancelled,
    SubscriptionDowngraded,
    OnboardingCompleted,
    FirstFeedbackSubmitted,
    /// A customer-defined event, matched by its exact name.
    Custom(CustomEventName),
}

/// Every predefined kind with its wire name, in the order the API documents them.
pub const PREDEFINED: [(LifecycleEvent, &str); 7] = [
    (LifecycleEvent::TrialExpired, "trial_expired"),
    (LifecycleEvent::TrialEndingSoon, "trial_ending_soon"),
    (LifecycleEvent::TrialCancelled, "trial_cancelled"),
    (
        LifecycleEvent::SubscriptionCancelled,
        "subscription_cancelled",
    ),
    (
        LifecycleEvent::SubscriptionDowngraded,
        "subscription_downgraded",
    ),
    (LifecycleEvent::OnboardingCompleted, "onboarding_completed"),
    (
        LifecycleEvent::FirstFeedbackSubmitted,
        "first_feedback_submitted",
    ),
];

/// The OpenAPI schema of [`LifecycleEvent`]: one string enum of the predefined kinds, or a
/// custom event object, each a named schema — what client generators turn into one enum and
/// one class (the derived schema was a union of seven one-value enums).
#[cfg(feature = "openapi")]
pub mod schema {
    use super::CustomEventName;
    use serde::Serialize;

    /// A predefined lifecycle event.
    #[derive(Serialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    #[allow(dead_code)]
    pub enum PredefinedEvent {
        TrialExpired,
        TrialEndingSoon,
        TrialCancelled,
        SubscriptionCancelled,
        SubscriptionDowngraded,
        OnboardingCompleted,
        FirstFeedbackSubmitted,
    }

    /// A customer-defined event, matched by its exact name.
    #[derive(Serialize, utoipa::ToSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    pub struct CustomEvent {
        /// 1 to 128 characters, no surrounding whitespace, no control characters.
        #[schema(value_type = String, min_length = 1, max_length = 128, example = "payment_failed")]
        custom: CustomEventName,
    }

    /// A lifecycle event: a predefined kind (`"trial_expired"`) or a custom one
    /// (`{"custom": "payment_failed"}`); matched by exact equality.
    #[derive(Serialize, utoipa::ToSchema)]
    #[serde(untagged)]
    #[allow(dead_code)]
    enum LifecycleEventDoc {
        Predefined(PredefinedEvent),
        Custom(CustomEvent),
    }

    impl utoipa::PartialSchema for super::LifecycleEvent {
        fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
            <LifecycleEventDoc as utoipa::PartialSchema>::schema()
        }
    }

    impl utoipa::ToSchema for super::LifecycleEvent {
        fn name() -> std::borrow::Cow<'static, str> {
            "LifecycleEvent".into()
        }

        fn schemas(
            schemas: &mut Vec<(
                String,
                utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
            )>,
        ) {
            <LifecycleEventDoc as utoipa::ToSchema>::schemas(schemas);
        }
    }
}

/// The prefix that keeps custom keys apart from predefined ones: predefined names hold no `:`.
const CUSTOM_KEY_PREFIX: &str = "custom:";

impl LifecycleEvent {
    /// The event named `name` the way `events/send` names events: a predefined name is that
    /// kind, any other valid name is the custom event of that name.
    pub fn from_name(name: &str) -> Result<Self, CustomEventNameError> {
        if let Some((event, _)) = PREDEFINED.iter().find(|(_, n)| *n == name) {
            return Ok(event.clone());
        }
        CustomEventName::parse(name).map(Self::Custom)
    }

    /// The event's name as `events/send` takes it: a predefined kind's wire name
    /// (`trial_expired`), or a custom event's own name.
    pub fn name(&self) -> &str {
        match self {
            Self::Custom(name) => name.as_str(),
            predefined => PREDEFINED
                .iter()
                .find(|(event, _)| event == predefined)
                .map_or("", |(_, name)| name),
        }
    }

    /// A flat string that is equal for two events exactly when the events are equal; it is what
    /// the store indexes survey triggers by.
    pub fn key(&self) -> String {
        match self {
            Self::Custom(name) => format!("{CUSTOM_KEY_PREFIX}{}", name.as_str()),
            predefined => PREDEFINED
                .iter()
                .find(|(event, _)| event == predefined)
                .map(|(_, name)| (*name).to_owned())
                .unwrap_or_default(),
        }
    }

    /// The inverse of [`LifecycleEvent::key`].
    pub fn from_key(key: &str) -> Option<Self> {
        match key.strip_prefix(CUSTOM_KEY_PREFIX) {
            Some(name) => CustomEventName::parse(name).ok().map(Self::Custom),
            None => PREDEFINED
                .iter()
                .find(|(_, name)| *name == key)
                .map(|(event, _)| event.clone()),
        }
    }
}

/// The name of a custom event: 1 to [`MAX_CUSTOM_NAME_LEN`] characters, no surrounding
/// whitespace, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(try_from = "String", into = "String")]
#[schemars(extend("minLength" = 1, "maxLength" = 128))]
pub struct CustomEventName(String);

/// Why a string is not a valid custom event name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomEventNameError {
    #[error("event name must not be empty")]
    Empty,
    #[error("event name must be at most {MAX_CUSTOM_NAME_LEN} characters")]
    TooLong,
    #[error("event name must not have surrounding whitespace or control characters")]
    InvalidCharacters,
}

impl CustomEventName {
    pub fn parse(raw: &str) -> Result<Self, CustomEventNameError> {
        if raw.is_empty() {
            return Err(CustomEventNameError::Empty);
        }
        if raw.chars().count() > MAX_CUSTOM_NAME_LEN {
            return Err(CustomEventNameError::TooLong);
        }
        if raw.trim() != raw || raw.chars().any(char::is_control) {
            return Err(CustomEventNameError::InvalidCharacters);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CustomEventName {
    type Error = CustomEventNameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<CustomEventName> for String {
    fn from(value: CustomEventName) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn predefined_events_travel_as_snake_case_strings() {
        for (event, name) in PREDEFINED {
            assert_eq!(serde_json::to_value(&event).unwrap(), json!(name));
            let back: LifecycleEvent = serde_json::from_value(json!(name)).unwrap();
            assert_eq!(back, event);
        }
    }

    #[test]
    fn a_custom_event_travels_as_an_object() {
        let event: LifecycleEvent =
            serde_json::from_value(json!({"custom": "payment_failed"})).unwrap();
        assert_eq!(
            event,
            LifecycleEvent::Custom(CustomEventName::parse("payment_failed").unwrap())
        );
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            json!({"custom": "payment_failed"})
        );
    }

    #[test]
    fn unknown_variants_and_bad_custom_names_do_not_parse() {
        for bad in [
            json!("trial_exploded"),
            json!({"custom": ""}),
            json!({"custom": " padded "}),
            json!({"other": "x"}),
            json!({"custom": "a", "extra": 1}),
            json!(42),
            json!(null),
        ] {
            assert!(
                serde_json::from_value::<LifecycleEvent>(bad.clone()).is_err(),
                "{bad} parsed"
            );
        }
    }

    #[test]
    fn a_custom_event_named_like_a_predefined_one_has_a_different_key() {
        let custom = LifecycleEvent::Custom(CustomEventName::parse("trial_expired").unwrap());
        assert_ne!(custom.key(), LifecycleEvent::TrialExpired.key());
        assert_eq!(LifecycleEvent::from_key(&custom.key()), Some(custom));
    }

    #[test]
    fn keys_round_trip_for_every_kind() {
        for (event, _) in PREDEFINED {
            assert_eq!(LifecycleEvent::from_key(&event.key()), Some(event));
        }
        assert_eq!(LifecycleEvent::from_key("nope"), None);
    }

    #[test]
    fn from_name_maps_predefined_names_to_their_kind_and_others_to_custom() {
        assert_eq!(
            LifecycleEvent::from_name("trial_expired").unwrap(),
            LifecycleEvent::TrialExpired
        );
        assert_eq!(
            LifecycleEvent::from_name("payment_failed").unwrap().key(),
            "custom:payment_failed"
        );
        assert!(LifecycleEvent::from_name("").is_err());
    }
}
