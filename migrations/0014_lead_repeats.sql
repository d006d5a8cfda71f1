-- API.md §6.1 in leader mode: the messages a lead brings into the order
-- that repeat the msg_id of a message ordered before them (JSON array of
-- {origin, seq}), decided once by the leader that records the lead and
-- dropped by every broker before it delivers under that lead.
ALTER TABLE leads ADD COLUMN repeats TEXT NOT NULL DEFAULT '[]';
