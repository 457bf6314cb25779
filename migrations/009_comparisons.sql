-- Comparisons (the Compare tab, /api/comparisons): one prompt answered by two sides, each a
-- normal conversation whose turns are normal durable turn workflows, linked to the comparison.
--
-- A comparison belongs to its owner like a conversation (owner_id; NULL in local mode) and is
-- read through the same ownership clause (chat_core/store/comparisons.py). Its sides hold the
-- model and label each was given, resolved when it was made (a side with no model gets the
-- default server's): the leaderboard counts what was compared even if a side's conversation
-- is later deleted. The vote is one per comparison; `voted_seq` is the round it was cast on
-- (the sides' user message position), so a preference pair is built from that round alone.
CREATE TABLE comparisons (
    id          uuid        PRIMARY KEY,
    owner_id    uuid        REFERENCES accounts (id) ON DELETE CASCADE,
    title       text        NOT NULL DEFAULT '',
    blind       boolean     NOT NULL,
    model_a     text        NOT NULL,
    model_b     text        NOT NULL,
    label_a     text        CHECK (length(label_a) BETWEEN 1 AND 80),
    label_b     text        CHECK (length(label_b) BETWEEN 1 AND 80),
    winner      text        CHECK (winner IN ('a', 'b', 'tie', 'both_bad')),
    voted_seq   bigint,
    voted_at    timestamptz,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK ((winner IS NULL) = (voted_at IS NULL) AND (winner IS NULL) = (voted_seq IS NULL))
);
CREATE INDEX comparisons_owner_created_idx ON comparisons (owner_id, created_at DESC, id);

-- A side's conversation names its comparison and side. `sealed`: a comparison's sides before
-- the vote, blind or not (what is judged cannot be changed under the vote, and a blind one's
-- model cannot be read). The store's ownership clause (OWNED) leaves sealed conversations out of
-- every person's view (conversation and message APIs, search, exports, ratings, share links),
-- so no surface but the comparison's own, which masks the names, can show what model answered;
-- only the turn workflows (chat_core.accounts.person.SYSTEM) read them. The vote unseals both
-- in the same transaction.
ALTER TABLE conversations ADD COLUMN comparison_id uuid REFERENCES comparisons (id) ON DELETE CASCADE;
ALTER TABLE conversations ADD COLUMN comparison_side text CHECK (comparison_side IN ('a', 'b'));
ALTER TABLE conversations ADD COLUMN sealed boolean NOT NULL DEFAULT false;
ALTER TABLE conversations ADD CONSTRAINT conversations_side_check
    CHECK ((comparison_id IS NULL) = (comparison_side IS NULL) AND (NOT sealed OR comparison_id IS NOT NULL));
CREATE UNIQUE INDEX conversations_comparison_side_idx ON conversations (comparison_id, comparison_side)
    WHERE comparison_id IS NOT NULL;
