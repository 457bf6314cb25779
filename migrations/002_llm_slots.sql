-- The global cap on LLM requests in flight, shared by every app process on this database
-- (LLM_GLOBAL_CONCURRENCY). A turn holds one slot while it streams. Each process heartbeats in
-- llm_executors; the slots of a process whose heartbeat stopped (it died) are free again.
CREATE TABLE llm_executors (
    executor_id   text PRIMARY KEY,
    heartbeat_at  timestamptz NOT NULL
);

CREATE TABLE llm_slots (
    slot         integer PRIMARY KEY,
    holder       text,          -- the turn's workflow id
    executor_id  text,
    acquired_at  timestamptz
);
