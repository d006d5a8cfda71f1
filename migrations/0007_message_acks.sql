-- API.md §6.2: acknowledgements of single messages, in any order. A
-- grow-only set beside the acknowledged prefixes of `positions`: a message
-- is acknowledged by a subscriber when its seq is within the subscriber's
-- position on the topic for its origin, or it is in this set.
CREATE TABLE acks (
    subscriber TEXT    NOT NULL,
    topic      TEXT    NOT NULL,
    origin     TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    PRIMARY KEY (subscriber, origin, seq)
) WITHOUT ROWID;
-- Retention: who acknowledged a message.
CREATE INDEX acks_by_message ON acks (origin, seq);
