-- A turn waits until every earlier turn of its conversation has a final reply. Instead of each
-- waiting turn polling for that (issue 13: hundreds of recovered turns polling stalled the app),
-- the transaction that makes a reply final sends a notification on channel chat_turn_final
-- with the payload '<conversation id> <reply id>'; each app process listens once and wakes
-- the turns of that conversation (chat_core/turn_wakeups.py). A trigger rather than code in
-- the store, so that every writer notifies: every path of this code, an older process during
-- an upgrade, an operator's UPDATE, a deleted conversation. NOTIFY is sent at commit, so a
-- woken turn always reads the final state.
CREATE FUNCTION notify_reply_final() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chat_turn_final', OLD.conversation_id::text || ' ' || OLD.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER messages_reply_final
    AFTER UPDATE OF status ON messages
    FOR EACH ROW
    WHEN (OLD.status IN ('pending', 'streaming') AND NEW.status NOT IN ('pending', 'streaming'))
    EXECUTE FUNCTION notify_reply_final();

CREATE TRIGGER messages_reply_deleted
    AFTER DELETE ON messages
    FOR EACH ROW
    WHEN (OLD.status IN ('pending', 'streaming'))
    EXECUTE FUNCTION notify_reply_final();
