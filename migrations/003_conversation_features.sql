-- Per-conversation settings, branches, reply alternatives, full-text search, fork overrides.

-- Overrides of the configured defaults for this conversation's turns: system_prompt,
-- temperature, max_tokens, top_p. The values a reply was produced with are in its params.
ALTER TABLE conversations ADD COLUMN settings jsonb NOT NULL DEFAULT '{}'::jsonb;

-- A branch (an edited message, or "branch from here") keeps a link to where it came from.
ALTER TABLE conversations ADD COLUMN origin_conversation_id uuid
    REFERENCES conversations (id) ON DELETE SET NULL;
ALTER TABLE conversations ADD COLUMN origin_message_id uuid;  -- may outlive the message

-- A user message may have several replies (retry, regenerate, fork, continue). The active one
-- is shown and sent as history; a reply becomes active when it completes, or when the user
-- picks it among the alternatives.
ALTER TABLE messages ADD COLUMN active boolean NOT NULL DEFAULT false;
UPDATE messages m SET active = true
WHERE m.id IN (
    SELECT DISTINCT ON (parent_id) id FROM messages
    WHERE role = 'assistant' AND status IN ('complete', 'stopped')
    ORDER BY parent_id, created_at DESC
);
CREATE INDEX messages_parent_active_idx ON messages (parent_id) WHERE active;

-- Ranked search over what was said ('english' stems words, so "planning" finds "plans").
ALTER TABLE messages ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('english', content)) STORED;
CREATE INDEX messages_search_idx ON messages USING gin (search);

-- Parameters a forked turn runs with instead of its original's (Workflows tab: fork with
-- other parameters). Written before the fork starts; its steps read them.
CREATE TABLE turn_overrides (
    workflow_id  text PRIMARY KEY,
    params       jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Deterministic ids for copied rows (branches): the same copy gets the same id, so a retried
-- branch request creates nothing twice. md5 is in every PostgreSQL (no extension needed).
CREATE FUNCTION uuid_from(namespace uuid, source uuid) RETURNS uuid
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT md5(namespace::text || ':' || source::text)::uuid $$;
