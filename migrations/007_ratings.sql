-- Ratings of replies: thumbs up (1) or down (-1), with optional tags and a comment, one per
-- reply (rating again replaces it; 0 in a request deletes it).
--
-- A rating has no owner column: like a message, it belongs to whoever owns its conversation,
-- read through messages -> conversations (chat_core/store/ratings.py scopes every query that
-- way). Deleting the reply, its conversation or the person deletes the rating with it, so
-- withdrawal (DELETE /api/me/data) leaves none behind. Only replies (role 'assistant') are
-- rated; the store's insert reads the message's role, which a CHECK here cannot.
--
-- The limits are chat_core/states.py's (MAX_RATING_TAGS, MAX_RATING_TAG_CHARS,
-- MAX_RATING_COMMENT_CHARS); tests/test_ratings.py compares the two.

-- Every tag is 1 to 40 characters (and none is NULL). A function, because a CHECK cannot hold
-- a subquery; IMMUTABLE, as a CHECK requires.
CREATE FUNCTION rating_tags_ok(tags text[]) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT coalesce(bool_and(t IS NOT NULL AND length(t) BETWEEN 1 AND 40), true)
          FROM unnest(tags) AS t $$;

CREATE TABLE ratings (
    message_id  uuid        PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    value       smallint    NOT NULL CHECK (value IN (-1, 1)),
    tags        text[]      NOT NULL DEFAULT '{}'
                CHECK (cardinality(tags) <= 10 AND rating_tags_ok(tags)),
    comment     text        NOT NULL DEFAULT '' CHECK (length(comment) <= 2000),
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
