-- A head's pending resource demand, as its last heartbeat reported it
-- (JSON of []api.ResourceDemand; NULL when none), as SQLite's 0009:
-- heartbeats may land on any replica, and the replica that reconciles the
-- cluster plans from what the store holds.
ALTER TABLE nodes ADD COLUMN demand TEXT;
