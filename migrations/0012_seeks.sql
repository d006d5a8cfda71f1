-- API.md §6.4: seeks. Per (subscriber, topic), the stamp of the latest
-- seek (a max register) is the subscription's current epoch. Positions,
-- acknowledgements by id and leases carry the epoch they were made in: a
-- row of an earlier epoch is deleted when a later seek merges, and one
-- arriving late is ignored; between two rows for the same key the later
-- epoch wins (within one epoch the merges are the old ones). Rows stay
-- keyed as before, so a subscription never sought is read as before.
CREATE TABLE seeks (
    subscriber TEXT    NOT NULL,
    topic      TEXT    NOT NULL,
    lamport    INTEGER NOT NULL,
    origin     TEXT    NOT NULL,
    PRIMARY KEY (subscriber, topic)
) WITHOUT ROWID;
ALTER TABLE positions ADD COLUMN epoch_lamport INTEGER NOT NULL DEFAULT 0;
ALTER TABLE positions ADD COLUMN epoch_origin TEXT NOT NULL DEFAULT '';
ALTER TABLE acks ADD COLUMN epoch_lamport INTEGER NOT NULL DEFAULT 0;
ALTER TABLE acks ADD COLUMN epoch_origin TEXT NOT NULL DEFAULT '';
ALTER TABLE leases ADD COLUMN epoch_lamport INTEGER NOT NULL DEFAULT 0;
ALTER TABLE leases ADD COLUMN epoch_origin TEXT NOT NULL DEFAULT '';
