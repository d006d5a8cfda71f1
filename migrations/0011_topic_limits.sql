-- API.md §6.3: a topic's limits as JSON (max_messages, max_bytes, max_age;
-- NULL for none). They are those of the live incarnation's latest
-- set_limits event, or else of its creation (whose event then keeps its
-- whole change in `details`): recomputed from the events whenever a
-- creation, deletion or set_limits merges, so they depend only on the set
-- of events.
ALTER TABLE topics ADD COLUMN limits TEXT;
CREATE INDEX events_topic_limits ON events (topic, lamport, origin)
    WHERE kind = 'set_limits';
