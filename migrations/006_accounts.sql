-- Share mode: people, their sessions and API tokens, and who owns each conversation.
--
-- Local mode (no SHARE_AUTH / SHARE_INVITE) has no accounts and leaves owner_id NULL; when
-- accounts are switched on, rows without an owner are given to the first admin at start-up
-- (chat_core/accounts/account_store.py, claim_unowned). Messages, turns and (later)
-- comparisons and ratings belong to whoever owns their conversation.

CREATE TABLE accounts (
    id             uuid        PRIMARY KEY,
    name           text        NOT NULL,
    -- Names are unique case-insensitively and after Unicode normalisation (NFKC, casefold):
    -- "Ann", "ann" and "ＡＮＮ" are one person.
    name_key       text        NOT NULL UNIQUE,
    -- argon2id (PHC string); NULL for a SHARE_AUTH account, whose password lives in the
    -- environment and is hashed again at each start (so changing it there takes effect).
    password_hash  text,
    is_admin       boolean     NOT NULL DEFAULT false,
    -- 'config': from SHARE_AUTH; 'signup': made with the invite code.
    source         text        NOT NULL CHECK (source IN ('config', 'signup')),
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    disabled_at    timestamptz,
    -- The time the person accepted SHARE_NOTICE; NULL: not (or no longer) accepted.
    consent_at     timestamptz,
    withdrawn_at   timestamptz
);

-- Browser sessions, so that a restart of the app does not log the room out. The cookie holds
-- a random token; only its SHA-256 is stored (a leaked table cannot be replayed).
CREATE TABLE sessions (
    token_hash   bytea       PRIMARY KEY,
    account_id   uuid        NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX sessions_account_idx ON sessions (account_id);

-- Personal API tokens for the REST API (Authorization: Bearer ...), shown once, stored hashed.
CREATE TABLE api_tokens (
    id           uuid        PRIMARY KEY,
    account_id   uuid        NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    token_hash   bytea       NOT NULL UNIQUE,
    name         text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_tokens_account_idx ON api_tokens (account_id);

ALTER TABLE conversations ADD COLUMN owner_id uuid REFERENCES accounts (id) ON DELETE CASCADE;
CREATE INDEX conversations_owner_updated_idx ON conversations (owner_id, updated_at DESC, id);

-- Every turn accepted for a person (sent, retried, forked, resumed), recorded when it is
-- accepted (before its workflow starts): the per-person limits count these under a per-person
-- lock, so a burst of requests arriving together cannot all slip under the limit. Kept when
-- the conversation is deleted (deleting it must not reset the per-minute count), and read by
-- withdrawal to find every turn the person ever ran.
CREATE TABLE turn_admissions (
    workflow_id      text        PRIMARY KEY,
    owner_id         uuid        NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    conversation_id  uuid        REFERENCES conversations (id) ON DELETE SET NULL,
    reply_id         uuid        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX turn_admissions_owner_idx ON turn_admissions (owner_id, created_at DESC);

-- Read-only links to a conversation: public, unguessable (only the token's SHA-256 is kept),
-- optionally expiring, revocable.
CREATE TABLE shared_links (
    id               uuid        PRIMARY KEY,
    token_hash       bytea       NOT NULL UNIQUE,
    conversation_id  uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at       timestamptz,
    revoked_at       timestamptz
);
CREATE INDEX shared_links_conversation_idx ON shared_links (conversation_id);
