-- Leader mode orders delivery by leads (see ARCHITECTURE.md "Leader-mode
-- order"): each new leader records a `lead` event naming the lead it
-- follows on and what it held when it started. The event's JSON is kept
-- in `details` (so it can be sent to peers again); `leads` is the merged
-- state, a grow-only set.
ALTER TABLE events ADD COLUMN details TEXT;
CREATE TABLE leads (
    origin      TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    term        INTEGER NOT NULL,
    prev_origin TEXT,
    prev_seq    INTEGER,
    base        TEXT    NOT NULL, -- JSON object: origin -> seq
    PRIMARY KEY (origin, seq)
) WITHOUT ROWID;
