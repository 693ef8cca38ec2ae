//! The diesel view of the tables in `migrations/`.

diesel::table! {
    organizations (id) {
        id -> Uuid,
        name -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Uuid,
        org_id -> Uuid,
        name -> Text,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        scopes -> Array<Text>,
        expires_at -> Nullable<Timestamptz>,
        parent_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    projects (id) {
        id -> Uuid,
        org_id -> Uuid,
        name -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        publishable_key -> Nullable<Text>,
        allowed_origins -> Array<Text>,
        widget_secret_sealed -> Nullable<Bytea>,
        widget_previous_secret_sealed -> Nullable<Bytea>,
        widget_previous_secret_expires_at -> Nullable<Timestamptz>,
        cap_max -> Nullable<Int4>,
        cap_period_seconds -> Nullable<Int8>,
    }
}

diesel::table! {
    surveys (id) {
        id -> Uuid,
        org_id -> Uuid,
        project_id -> Uuid,
        name -> Text,
        status -> Text,
        current_version -> Int4,
        trigger_events -> Array<Text>,
        trigger_json -> Jsonb,
        cooldown_seconds -> Int8,
        sample_rate -> Float8,
        invitation_lifetime_seconds -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        trial_reminder_lead_seconds -> Int8,
        sample_by -> Text,
    }
}

diesel::table! {
    reminder_sync (survey_id) {
        survey_id -> Uuid,
        requested_at -> Timestamptz,
        after_user -> Nullable<Text>,
    }
}

diesel::table! {
    segments (id) {
        id -> Uuid,
        org_id -> Uuid,
        project_id -> Uuid,
        name -> Text,
        description -> Text,
        condition -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    survey_versions (survey_id, version) {
        survey_id -> Uuid,
        version -> Int4,
        questions -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    triggers (id) {
        id -> Uuid,
        org_id -> Uuid,
        project_id -> Uuid,
        trigger_type -> Text,
        status -> Text,
        user_ref -> Nullable<Text>,
        event -> Jsonb,
        error -> Nullable<Text>,
        matched_count -> Int4,
        created_count -> Int4,
        cooldown_count -> Int4,
        sample_count -> Int4,
        errored_count -> Int4,
        created_at -> Timestamptz,
        started_at -> Nullable<Timestamptz>,
        completed_at -> Nullable<Timestamptz>,
        job_id -> Nullable<Uuid>,
        source -> Nullable<Jsonb>,
        event_data -> Nullable<Jsonb>,
        variables -> Nullable<Jsonb>,
        scheduled_for -> Nullable<Timestamptz>,
        survey_id -> Nullable<Uuid>,
        reminder_for -> Nullable<Timestamptz>,
        reason -> Nullable<Text>,
        condition_count -> Int4,
        cap_count -> Int4,
    }
}

diesel::table! {
    trigger_surveys (trigger_id, survey_id) {
        trigger_id -> Uuid,
        survey_id -> Uuid,
        survey_version -> Int4,
        outcome -> Text,
        reason -> Nullable<Text>,
        invitation_id -> Nullable<Uuid>,
        until -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    invitations (id) {
        id -> Uuid,
        org_id -> Uuid,
        project_id -> Uuid,
        survey_id -> Uuid,
        survey_version -> Int4,
        trigger_id -> Uuid,
        user_ref -> Text,
        token_hash -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        token_sealed -> Nullable<Bytea>,
    }
}

diesel::table! {
    cooldowns (survey_id, user_ref) {
        survey_id -> Uuid,
        user_ref -> Text,
        last_invited_at -> Timestamptz,
    }
}

diesel::table! {
    processed_envelopes (consumer, envelope_id) {
        consumer -> Text,
        envelope_id -> Uuid,
        processed_at -> Timestamptz,
    }
}

diesel::table! {
    outbox (id) {
        id -> Int8,
        envelope_id -> Uuid,
        exchange -> Text,
        routing_key -> Text,
        body -> Bytea,
        created_at -> Timestamptz,
        traceparent -> Nullable<Text>,
        attempts -> Int4,
        not_before -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    project_event_keys (project_id, event_key) {
        project_id -> Uuid,
        event_key -> Text,
        first_seen -> Timestamptz,
    }
}

diesel::table! {
    users (project_id, user_ref) {
        project_id -> Uuid,
        user_ref -> Text,
        org_id -> Uuid,
        email -> Nullable<Text>,
        name -> Nullable<Text>,
        phone -> Nullable<Text>,
        attributes -> Jsonb,
        trial_ends_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        groups -> Array<Text>,
    }
}

diesel::table! {
    idempotency_keys (org_id, key) {
        org_id -> Uuid,
        key -> Text,
        request_hash -> Bytea,
        state -> Text,
        response_status -> Nullable<Int4>,
        response_body -> Nullable<Bytea>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_subscriptions (id) {
        id -> Uuid,
        org_id -> Uuid,
        project_id -> Uuid,
        url -> Text,
        description -> Text,
        event_types -> Array<Text>,
        status -> Text,
        disabled_reason -> Nullable<Text>,
        retry_policy -> Jsonb,
        timeout_ms -> Int4,
        payload_version -> Int4,
        secret_encrypted -> Bytea,
        previous_secret_encrypted -> Nullable<Bytea>,
        previous_secret_expires_at -> Nullable<Timestamptz>,
        last_success_at -> Nullable<Timestamptz>,
        verified_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        failing_since -> Nullable<Timestamptz>,
        failures_in_streak -> Int4,
        disabled_at -> Nullable<Timestamptz>,
        failing_notified_at -> Nullable<Timestamptz>,
        rate_limit -> Nullable<Int4>,
        rate_next_slot -> Nullable<Timestamptz>,
        ordered -> Bool,
        format -> Text,
    }
}

diesel::table! {
    webhook_messages (id) {
        id -> Uuid,
        org_id -> Uuid,
        project_id -> Uuid,
        event_type -> Text,
        version -> Int4,
        body_encrypted -> Nullable<Bytea>,
        occurred_at -> Timestamptz,
        created_at -> Timestamptz,
        user_ref -> Nullable<Text>,
        payload_erased_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webhook_deliveries (id) {
        id -> Uuid,
        message_id -> Uuid,
        subscription_id -> Uuid,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        first_attempt_at -> Nullable<Timestamptz>,
        last_attempt_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        throttled -> Int4,
        format -> Text,
        payload_version -> Int4,
    }
}

diesel::table! {
    webhook_attempts (id) {
        id -> Int8,
        delivery_id -> Uuid,
        message_id -> Uuid,
        subscription_id -> Uuid,
        attempted_at -> Timestamptz,
        status_code -> Nullable<Int4>,
        duration_ms -> Int4,
        response_body -> Nullable<Text>,
        error -> Nullable<Text>,
    }
}

diesel::joinable!(webhook_deliveries -> webhook_messages (message_id));
diesel::joinable!(webhook_deliveries -> webhook_subscriptions (subscription_id));

diesel::table! {
    responses (id) {
        id -> Uuid,
        invitation_id -> Uuid,
        org_id -> Uuid,
        project_id -> Uuid,
        survey_id -> Uuid,
        survey_version -> Int4,
        submitted_by -> Text,
        status -> Text,
        sequence -> Int4,
        displayed_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        completed_at -> Nullable<Timestamptz>,
        channel -> Nullable<Text>,
        locale -> Nullable<Text>,
        user_agent -> Nullable<Text>,
    }
}

diesel::table! {
    answers (response_id, question_id) {
        response_id -> Uuid,
        question_id -> Text,
        value -> Jsonb,
        answered_at -> Timestamptz,
    }
}

diesel::joinable!(answers -> responses (response_id));

diesel::joinable!(api_tokens -> organizations (org_id));
diesel::joinable!(projects -> organizations (org_id));
diesel::joinable!(surveys -> projects (project_id));
diesel::joinable!(survey_versions -> surveys (survey_id));
diesel::joinable!(invitations -> surveys (survey_id));

diesel::allow_tables_to_appear_in_same_query!(
    organizations,
    api_tokens,
    projects,
    surveys,
    segments,
    reminder_sync,
    survey_versions,
    triggers,
    trigger_surveys,
    invitations,
    cooldowns,
    processed_envelopes,
    outbox,
    project_event_keys,
    users,
    idempotency_keys,
    webhook_subscriptions,
    webhook_messages,
    webhook_deliveries,
    webhook_attempts,
    responses,
    answers,
);
