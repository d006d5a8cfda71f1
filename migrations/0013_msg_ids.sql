-- API.md §6.1: the client ids of the messages stored within the dedup
-- window, kept apart from the messages: retention deletes a message as
-- soon as every subscriber acknowledged it, and a repeat within the window
-- must still find it. A row is written with its message, in the same
-- transaction, and forgotten by the retention sweep once it is older than
-- the window (or with its topic's deletion), whatever became of the
-- message.
CREATE TABLE msg_ids (
    topic           TEXT    NOT NULL,
    publisher       TEXT    NOT NULL,
    msg_id          TEXT    NOT NULL,
    origin          TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    lamport         INTEGER NOT NULL,
    published_at_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, publisher, msg_id, origin, seq)
) WITHOUT ROWID;
CREATE INDEX msg_ids_by_age ON msg_ids (published_at_ms);
INSERT INTO msg_ids
    SELECT topic, publisher, msg_id, origin, seq, lamport, published_at_ms
    FROM messages WHERE msg_id IS NOT NULL;
DROP INDEX messages_by_msg_id;
