-- Node credentials expire and are renewed through the heartbeat answer. A
-- node holds its current credential and, until the new one is used or the
-- old one expires, the one it replaced, so an answer lost on the way does
-- not lock the node out.
--
-- Credentials issued before this migration get a day (the default
-- lifetime) from now, and are renewed like any other.

ALTER TABLE nodes ADD COLUMN credential_expires_at INTEGER;
ALTER TABLE nodes ADD COLUMN prev_credential_prefix TEXT;
ALTER TABLE nodes ADD COLUMN prev_credential_hash BLOB;
ALTER TABLE nodes ADD COLUMN prev_credential_expires_at INTEGER;
CREATE UNIQUE INDEX nodes_prev_credential_prefix ON nodes(prev_credential_prefix) WHERE prev_credential_prefix IS NOT NULL;
UPDATE nodes SET credential_expires_at = (CAST(strftime('%s', 'now') AS INTEGER) + 86400) * 1000000000
	WHERE credential_hash IS NOT NULL;
