-- Direct access: where a head's access proxy serves (https://host:port), as
-- the head reported it; empty until it does. Answered to users as their
-- cluster's head_access_url while the head is RUNNING.

ALTER TABLE nodes ADD COLUMN access_url TEXT NOT NULL DEFAULT '';
