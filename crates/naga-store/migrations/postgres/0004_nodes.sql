-- The nodes that run on this database, for operators (the dashboard,
-- GET /nodes): each one's last heartbeat (written as it renews its leases,
-- every lease/3), when it started and when it stopped cleanly.
CREATE TABLE nodes (
    id            TEXT PRIMARY KEY,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL,
    stopped_at    BIGINT
);
