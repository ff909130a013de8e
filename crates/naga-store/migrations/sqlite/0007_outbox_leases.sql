-- Outbox rows are held by the node that delivers them, under a lease like a
-- task's: a node that dies leaves its pending callbacks and notifications to
-- the others (or to its next run) once the lease expires. Rows from before
-- have no holder: the next start takes them.
ALTER TABLE callbacks ADD COLUMN lease_owner TEXT;
ALTER TABLE callbacks ADD COLUMN lease_expires_at INTEGER;
ALTER TABLE notifications ADD COLUMN lease_owner TEXT;
ALTER TABLE notifications ADD COLUMN lease_expires_at INTEGER;
