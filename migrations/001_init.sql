-- The seed's two tables, with the columns a durable, analysable chat needs.
--
-- A turn is one user message and the reply (or replies) that answer it. Both rows carry the
-- turn's position `seq` in the conversation; the ids are derived from the DBOS workflow id, so a
-- workflow step that runs twice writes the same rows once.

CREATE TABLE conversations (
    id          uuid PRIMARY KEY,
    title       text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- seq of the newest user message; bumped under the row lock so turns get a total order.
    last_seq    bigint      NOT NULL DEFAULT 0
);

CREATE INDEX conversations_updated_at_idx ON conversations (updated_at DESC, id);

CREATE TABLE messages (
    id                 uuid PRIMARY KEY,
    conversation_id    uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq                bigint      NOT NULL,
    role               text        NOT NULL CHECK (role IN ('user', 'assistant')),
    content            text        NOT NULL DEFAULT '',
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- For a reply: the user message it answers. Several replies may answer one message
    -- (retry, regenerate, fork); the newest complete one is the one shown and sent as history.
    parent_id          uuid REFERENCES messages (id) ON DELETE CASCADE,
    -- pending: accepted, not yet generating; streaming: tokens arriving; complete; stopped
    -- (by the user, partial text kept); error (recorded, retryable); cancelled (workflow cancelled).
    status             text        NOT NULL DEFAULT 'complete'
                       CHECK (status IN ('pending', 'streaming', 'complete', 'stopped', 'error', 'cancelled')),
    error              text,
    stop_requested     boolean     NOT NULL DEFAULT false,
    workflow_id        text,
    model              text,
    prompt_tokens      integer,
    completion_tokens  integer,
    tokens_estimated   boolean,
    ttft_ms            double precision,
    latency_ms         double precision,
    finish_reason      text,
    params             jsonb,
    completed_at       timestamptz,
    CHECK ((role = 'user') = (parent_id IS NULL))
);

-- One user message per position: the arbiter of turn order within a conversation.
CREATE UNIQUE INDEX messages_user_seq_idx ON messages (conversation_id, seq) WHERE role = 'user';
-- Reading a conversation, or its newest turns for the LLM's history, walks this index backwards.
CREATE INDEX messages_conversation_seq_idx ON messages (conversation_id, seq, created_at);
CREATE INDEX messages_parent_idx ON messages (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX messages_workflow_idx ON messages (workflow_id) WHERE workflow_id IS NOT NULL;
-- Replies still being produced; small, so finding a conversation's in-flight turns is cheap.
CREATE INDEX messages_in_flight_idx ON messages (conversation_id, seq)
    WHERE status IN ('pending', 'streaming');
