-- Two things the dataset export (chat_core/data/dataset_export.py) needs to tell.
--
-- 1. The deployment's secret for pseudonyms. A dataset names a person by
--    HMAC-SHA256(secret, account id), not by a hash of the id alone: account ids are shown to
--    people (GET /api/me, the UI's login), and anyone holding one could otherwise find that
--    person's lines in a shared file. One row, made with a random value by the first export
--    (chat_core/store/dataset_rows.py: INSERT ... ON CONFLICT DO NOTHING, so two first exports
--    at once agree) and never changed: pseudonyms stay the same across exports. A restore of a
--    backup keeps it; a new database gets a new one (and new pseudonyms).
CREATE TABLE dataset_secret (
    name        text        PRIMARY KEY CHECK (name = 'pseudonym'),
    secret      bytea       NOT NULL CHECK (octet_length(secret) >= 32),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- 2. Which reply a person chose among a message's alternatives (◀ ▶, or
--    POST .../select): ChatStore.select_reply sets it on the reply chosen and clears it on its
--    siblings. `active` alone cannot tell, since a new reply becomes active by finishing. The
--    preference export prefers the shown reply to its alternatives only when it was chosen.
--    NULL for every reply before this migration (no choice recorded). Adding a nullable
--    column with no default rewrites nothing.
ALTER TABLE messages ADD COLUMN selected_at timestamptz;
