-- rumor broker schema, version 1.
--
-- Every state change is an event identified by (origin, seq): `origin` is
-- the broker that sequenced it, `seq` that broker's gapless counter, and
-- (lamport, origin) orders events across brokers. Publishes live in
-- `messages`; all other events in `events`. The remaining tables are the
-- state those events merge into.

-- Non-message events, kept so that they can be replayed to other brokers.
CREATE TABLE events (
    origin     TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    lamport    INTEGER NOT NULL,
    kind       TEXT    NOT NULL, -- register_publisher, register_subscriber, create_topic,
                                 -- delete_topic, subscribe, unsubscribe, ack
    actor      TEXT    NOT NULL, -- the publisher or subscriber that made the change
    topic      TEXT,             -- the topic it concerns, if any
    start      TEXT,             -- subscribe: 'earliest' or 'latest'
    ack_origin TEXT,             -- ack: read up to (ack_origin, ack_seq)
    ack_seq    INTEGER,
    PRIMARY KEY (origin, seq)
) WITHOUT ROWID;

CREATE INDEX events_topic_creations ON events (topic, lamport, origin)
    WHERE kind = 'create_topic';

-- Published messages (publish events). The payload is stored as text.
CREATE TABLE messages (
    origin          TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    lamport         INTEGER NOT NULL,
    topic           TEXT    NOT NULL,
    publisher       TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    published_at_ms INTEGER NOT NULL,
    PRIMARY KEY (origin, seq)
);

-- Delivery order within a topic.
CREATE INDEX messages_by_topic ON messages (topic, lamport, origin);
-- Retention: what every subscriber acknowledged, and what is old.
CREATE INDEX messages_by_topic_origin ON messages (topic, origin, seq);
CREATE INDEX messages_by_age ON messages (published_at_ms);

-- Per origin, the highest seq below which this broker holds every event.
CREATE TABLE origins (
    origin TEXT    PRIMARY KEY,
    have   INTEGER NOT NULL
) WITHOUT ROWID;

-- The Lamport clock, as of the last commit.
CREATE TABLE clock (
    id      INTEGER PRIMARY KEY CHECK (id = 0),
    lamport INTEGER NOT NULL
);
INSERT INTO clock (id, lamport) VALUES (0, 0);

-- Registrations: grow-only sets.
CREATE TABLE publishers (id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE subscribers (id TEXT PRIMARY KEY) WITHOUT ROWID;

-- Topics. The latest deletion (a max register) ends every incarnation
-- before it; the live incarnation, if any, is the earliest creation after it.
CREATE TABLE topics (
    name            TEXT    PRIMARY KEY,
    created_by      TEXT,              -- NULL while the topic does not exist
    created_lamport INTEGER,
    created_origin  TEXT,
    deleted_lamport INTEGER NOT NULL DEFAULT 0,
    deleted_origin  TEXT    NOT NULL DEFAULT ''
) WITHOUT ROWID;

-- Subscriptions: last writer wins by (lamport, origin) between subscribe
-- and unsubscribe. A subscription reads messages stamped after its start.
CREATE TABLE subscriptions (
    subscriber    TEXT    NOT NULL,
    topic         TEXT    NOT NULL,
    live          INTEGER NOT NULL,
    lamport       INTEGER NOT NULL,
    origin        TEXT    NOT NULL,
    start_lamport INTEGER NOT NULL,
    start_origin  TEXT    NOT NULL,
    PRIMARY KEY (subscriber, topic)
) WITHOUT ROWID;

CREATE INDEX subscriptions_by_topic ON subscriptions (topic) WHERE live = 1;

-- Acknowledged positions: per (subscriber, topic, origin) the max seq read.
CREATE TABLE positions (
    subscriber TEXT    NOT NULL,
    topic      TEXT    NOT NULL,
    origin     TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    PRIMARY KEY (subscriber, topic, origin)
) WITHOUT ROWID;
