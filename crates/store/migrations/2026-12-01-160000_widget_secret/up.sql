-- The in-app widget's identity-verification secret: the customer's backend signs each user
-- ref with it (HMAC-SHA256) and the widget sends the signature. Sealed under the deployment's
-- key: verifying needs the plaintext. After a rotation the previous secret verifies too until
-- its expiry, so backends can be redeployed with the new one.
ALTER TABLE projects
    ADD COLUMN widget_secret_sealed bytea,
    ADD COLUMN widget_previous_secret_sealed bytea,
    ADD COLUMN widget_previous_secret_expires_at timestamptz;
