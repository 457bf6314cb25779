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
--    turns-to-replies join counted it once per copy). Copies are exactly the rows whose id is
--    uuid_from(their conversation, the original's id).
UPDATE messages b SET workflow_id = NULL
WHERE b.workflow_id IS NOT NULL
  AND EXISTS (SELECT 1 FROM messages o
              WHERE o.workflow_id = b.workflow_id AND o.id <> b.id
                AND uuid_from(b.conversation_id, o.id) = b.id);
