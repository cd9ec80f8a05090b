-- Signing in to the console: each user's TOTP secret and the last code step accepted (a code
-- is never accepted twice), failed attempts with the lockout they led to, and server-side
-- sessions known by the SHA-256 of their cookie.

ALTER TABLE users ADD COLUMN totp_secret TEXT; -- base32; none until the user enrolled
ALTER TABLE users ADD COLUMN totp_last_step BIGINT;
ALTER TABLE users ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN locked_until TEXT;

CREATE TABLE sessions (
    token_hash     TEXT PRIMARY KEY,
    user_id        BIGINT NOT NULL REFERENCES users (id),
    stage          TEXT NOT NULL CHECK (stage IN ('enrol', 'totp', 'signed_in')),
    csrf           TEXT NOT NULL,
    pending_secret TEXT, -- the TOTP secret offered while enrolling
    created_at     TEXT NOT NULL,
    expires_at     TEXT NOT NULL
);

CREATE INDEX sessions_user ON sessions (user_id);
