-- API.md §6.2: shared subscriptions. `shared` holds a subscription's
-- lease settings as JSON (ack_wait_ms, backoff_ms, max_deliveries,
-- dead_letter_topic); NULL for a v1 subscription. It is part of the
-- subscription's last-writer-wins record.
ALTER TABLE subscriptions ADD COLUMN shared TEXT;
