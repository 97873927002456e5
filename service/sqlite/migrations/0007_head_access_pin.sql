-- Direct access: the SHA-256 of the public key (SubjectPublicKeyInfo DER,
-- base64 std) of the access certificate last issued to a head. The access
-- CA signs every cluster's heads, so clients pin the head's key too
-- (curl --pinnedpubkey sha256//<this>); empty until a certificate is issued.

ALTER TABLE nodes ADD COLUMN access_public_key_sha256 TEXT NOT NULL DEFAULT '';
