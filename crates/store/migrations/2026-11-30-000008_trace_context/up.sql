-- The W3C trace context of the work that emitted an outbox message, published with it so
-- a trace continues across the broker.
ALTER TABLE outbox ADD COLUMN traceparent text;
