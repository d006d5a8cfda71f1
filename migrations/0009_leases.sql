-- API.md §6.2: leases of a shared subscription's messages, per
-- (subscriber, message). `deliveries` counts the lease events that gave
-- the message out (each event is applied once, and adding commutes);
-- `until_ms` (when the lease ends) and `eligible_ms` (when the message
-- may be given out again unless acknowledged) are the latest lease
-- event's, by stamp (a nack or an extension changes only those).
CREATE TABLE leases (
    subscriber   TEXT    NOT NULL,
    origin       TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    topic        TEXT    NOT NULL,
    deliveries   INTEGER NOT NULL,
    until_ms     INTEGER NOT NULL,
    eligible_ms  INTEGER NOT NULL,
    lamport      INTEGER NOT NULL,
    stamp_origin TEXT    NOT NULL,
    PRIMARY KEY (subscriber, origin, seq)
) WITHOUT ROWID;
