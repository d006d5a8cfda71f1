-- One index per message besides the primary key: every index is another
-- B-tree that each publish writes. Per topic and origin in seq order
-- (stamps grow with seq per origin) serves delivery, which merges the
-- origins by (lamport, origin), and retention of acknowledged messages;
-- the stamp rides along so that stamp checks need no table lookup.
-- Expiry scans each origin in seq order through the primary key.
DROP INDEX messages_by_topic;
DROP INDEX messages_by_topic_origin;
DROP INDEX messages_by_age;
CREATE INDEX messages_by_topic ON messages (topic, origin, seq, lamport);
