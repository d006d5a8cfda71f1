-- Reads of a shared subscription look for leases that end in the future
-- (what to skip, when to wake): in order of `eligible_ms`, not across every
-- lease the subscriber ever had.
CREATE INDEX leases_by_eligible ON leases (subscriber, eligible_ms);
