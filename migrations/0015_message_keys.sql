-- Messages keyed by integers: each topic and origin name is stored once,
-- in `names`, and a message's row, its key and its topic index hold the
-- name's id. The text keys made every B-tree descent compare strings and
-- took a third of a message's bytes on disk (300 bytes a message against
-- 193 in the sqlite3 shell; one broker's batches +23-33%, BENCHMARKS.md,
-- eighth look). `messages` stays, as a view with the names, for every
-- query and for a look with sqlite3; writes go to `message_rows`.
-- The copy runs in one transaction: the log grows by about the new
-- table, and the old table's pages become free space in the file (no
-- VACUUM), so the saving shows in what is written afterwards.
CREATE TABLE names (
    id   INTEGER PRIMARY KEY,
    name TEXT    NOT NULL UNIQUE
);
INSERT OR IGNORE INTO names (name) SELECT DISTINCT origin FROM messages;
INSERT OR IGNORE INTO names (name) SELECT DISTINCT topic FROM messages;
CREATE TABLE message_rows (
    origin_id       INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    lamport         INTEGER NOT NULL,
    topic_id        INTEGER NOT NULL,
    publisher       TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    published_at_ms INTEGER NOT NULL,
    headers         TEXT,
    msg_id          TEXT,
    PRIMARY KEY (origin_id, seq)
);
INSERT INTO message_rows
    SELECT o.id, m.seq, m.lamport, t.id, m.publisher, m.payload, m.published_at_ms,
           m.headers, m.msg_id
    FROM messages m JOIN names o ON o.name = m.origin JOIN names t ON t.name = m.topic
    ORDER BY m.rowid;
DROP TABLE messages;
CREATE INDEX message_rows_by_topic ON message_rows (topic_id, origin_id, seq, lamport);
CREATE VIEW messages AS
    SELECT m.rowid AS row_id, o.name AS origin, m.seq, m.lamport, t.name AS topic,
           m.publisher, m.payload, m.published_at_ms, m.headers, m.msg_id
    FROM message_rows m
    JOIN names o ON o.id = m.origin_id
    JOIN names t ON t.id = m.topic_id;
