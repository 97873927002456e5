-- A head's pending resource demand, as its last heartbeat reported it
-- (JSON of []api.ResourceDemand; NULL when none). Persisted so that a
-- control plane planning from it sees it wherever the heartbeat landed.

ALTER TABLE nodes ADD COLUMN demand TEXT;
