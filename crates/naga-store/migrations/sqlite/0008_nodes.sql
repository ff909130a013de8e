-- The node that runs on this file (one at a time; its identity survives a
-- restart): its last heartbeat, when it started, when it stopped cleanly.
CREATE TABLE nodes (
    id            TEXT PRIMARY KEY,
    started_at    INTEGER NOT NULL,
    heartbeat_at  INTEGER NOT NULL,
    stopped_at    INTEGER
);
