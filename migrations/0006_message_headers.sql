-- API.md §6.1: a message's headers (a JSON object of strings, NULL for
-- none) and the id its publisher gave it (NULL for none). Deduplication
-- looks a publish up by (topic, publisher, msg_id); the index holds only
-- the messages that have one.
ALTER TABLE messages ADD COLUMN headers TEXT;
ALTER TABLE messages ADD COLUMN msg_id TEXT;
CREATE INDEX messages_by_msg_id ON messages (topic, publisher, msg_id)
    WHERE msg_id IS NOT NULL;
