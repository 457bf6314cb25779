-- 1. Search indexes finished text only. The generated tsvector of 003 was recomputed on every
--    partial checkpoint of a streaming reply (re-parsing the whole text each time) and let
--    search find half-written replies. NULL while a reply is pending or streaming.
ALTER TABLE messages DROP COLUMN search;
ALTER TABLE messages ADD COLUMN search tsvector GENERATED ALWAYS AS (
    CASE WHEN status IN ('pending', 'streaming') THEN NULL
         ELSE to_tsvector('english', content) END) STORED;
CREATE INDEX messages_search_idx ON messages USING gin (search);

-- 2. A branch's copied rows no longer carry the workflow id of the turn that wrote the
--    original: that turn belongs to the source conversation, and the copies made it look as if
--    it had run in every branch (the Workflows tab's conversation filter and the notebooks'
--    turns-to-replies join counted it once per copy). Copies keep the original's created_at,
--    so they are the rows of a branch older than the branch itself; this finds them even when
--    the source conversation has since been deleted.
UPDATE messages m SET workflow_id = NULL
FROM conversations c
WHERE c.id = m.conversation_id AND c.origin_message_id IS NOT NULL
  AND m.workflow_id IS NOT NULL AND m.created_at < c.created_at;

-- 3. A reply without text (stopped before its first token) was made active and hid the good
--    alternative; it no longer is. Where that happened, the newest reply with text is active
--    again.
WITH emptied AS (
    UPDATE messages e SET active = false
    WHERE e.role = 'assistant' AND e.active AND e.content = ''
      AND EXISTS (SELECT 1 FROM messages g WHERE g.parent_id = e.parent_id AND g.id <> e.id
                    AND g.content <> '' AND g.status IN ('complete', 'stopped'))
    RETURNING e.parent_id)
UPDATE messages m SET active = true
WHERE m.id IN (SELECT DISTINCT ON (g.parent_id) g.id FROM messages g
               WHERE g.parent_id IN (SELECT parent_id FROM emptied)
                 AND g.content <> '' AND g.status IN ('complete', 'stopped')
               ORDER BY g.parent_id, g.created_at DESC);
