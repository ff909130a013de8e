-- Accepting a batch in one statement: one round trip and one commit, where
-- it took a transaction of four (BEGIN, the session's row, the task,
-- COMMIT). The same decisions as before, in the same order, now in the
-- database; the store's Rust side (`postgres/tasks.rs`) calls it.
--
-- A batch that is not stored raises, so that nothing of the statement
-- stays (not even the session's row touched), with its reason as the
-- SQLSTATE and what the caller needs as the message:
--   NGBSY  a `reject` batch, and the session has unfinished batches;
--   NGDUP  an identical batch is still active: message = its seq;
--   NGANA  the analysis session belongs to another session: message = it;
--   NGKWN  the request id is known (the caller reads what it was).
--
-- In READ COMMITTED each statement of a (volatile) function sees what was
-- committed before it began: every read below comes after the session's
-- row is locked, so it sees the session's batches accepted before.
CREATE FUNCTION naga_accept(
    p_id TEXT,
    p_kind TEXT,
    p_session_id TEXT,
    p_analysis_session_id TEXT,
    -- The analysis session's session when the node knows it (it never
    -- changes), else NULL: it is then created or read here.
    p_analysis_owner TEXT,
    p_query TEXT,
    p_callback_url TEXT,
    p_policy TEXT,
    p_fingerprint TEXT,
    p_calls_count BIGINT,
    p_calls TEXT,
    p_response TEXT,
    p_accepted_at BIGINT,
    -- Whether to store it running, held by p_lease_owner until
    -- p_lease_until (granted only when it is ready).
    p_start BOOLEAN,
    p_lease_owner TEXT,
    p_lease_until BIGINT,
    OUT o_seq BIGINT,
    OUT o_started BOOLEAN,
    OUT o_ready BOOLEAN,
    OUT o_accepted_at BIGINT,
    OUT o_analysis_owner TEXT)
LANGUAGE plpgsql AS $$
DECLARE
    v_prev BIGINT;
    v_busy BOOLEAN;
    v_active BIGINT;
BEGIN
    -- The session's row, created or touched, and locked: its batches join
    -- its chain (tasks.prev_seq) one at a time.
    INSERT INTO sessions AS s (id, created_at, last_activity_at)
    VALUES (p_session_id, p_accepted_at, p_accepted_at)
    ON CONFLICT (id) DO UPDATE
        SET last_activity_at = GREATEST(s.last_activity_at, EXCLUDED.last_activity_at)
    RETURNING s.last_task_seq INTO v_prev;

    -- A session's batches are stored in the order of their times, and one
    -- that starts at once does not start before the one before it ended.
    SELECT GREATEST(p_accepted_at, t.accepted_at, t.finished_at) INTO o_accepted_at
    FROM tasks t WHERE t.seq = v_prev;
    o_accepted_at := COALESCE(o_accepted_at, p_accepted_at);

    v_busy := EXISTS (SELECT 1 FROM tasks t WHERE t.session_id = p_session_id
                      AND t.status IN ('queued', 'running'));
    IF v_busy AND p_policy = 'reject'
       AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = p_id) THEN
        RAISE EXCEPTION USING ERRCODE = 'NGBSY', MESSAGE = 'session busy';
    END IF;

    IF p_fingerprint IS NOT NULL THEN
        SELECT t.seq INTO v_active FROM tasks t
        WHERE t.session_id = p_session_id AND t.fingerprint = p_fingerprint
          AND t.status IN ('queued', 'running')
        ORDER BY t.seq LIMIT 1;
        -- (A known request id answers as itself, below.)
        IF v_active IS NOT NULL AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = p_id) THEN
            RAISE EXCEPTION USING ERRCODE = 'NGDUP', MESSAGE = v_active::TEXT;
        END IF;
    END IF;

    IF p_analysis_session_id IS NOT NULL THEN
        o_analysis_owner := p_analysis_owner;
        IF o_analysis_owner IS NULL THEN
            INSERT INTO analysis_sessions (id, session_id, created_at)
            VALUES (p_analysis_session_id, p_session_id, o_accepted_at)
            ON CONFLICT (id) DO NOTHING
            RETURNING session_id INTO o_analysis_owner;
            IF o_analysis_owner IS NULL THEN
                SELECT a.session_id INTO o_analysis_owner FROM analysis_sessions a
                WHERE a.id = p_analysis_session_id;
            END IF;
        END IF;
        IF o_analysis_owner <> p_session_id THEN
            RAISE EXCEPTION USING ERRCODE = 'NGANA', MESSAGE = o_analysis_owner;
        END IF;
    END IF;

    o_ready := NOT v_busy OR p_policy = 'parallel';
    o_started := p_start AND o_ready;
    INSERT INTO tasks (id, kind, session_id, analysis_session_id, query, callback_url, policy,
        fingerprint, status, calls_count, calls, response, accepted_at, started_at,
        lease_owner, lease_expires_at, prev_seq, ready)
    VALUES (p_id, p_kind, p_session_id, p_analysis_session_id, p_query, p_callback_url,
        p_policy, p_fingerprint, CASE WHEN o_started THEN 'running' ELSE 'queued' END,
        p_calls_count, p_calls, p_response, o_accepted_at,
        CASE WHEN o_started THEN o_accepted_at END,
        CASE WHEN o_started THEN p_lease_owner END,
        CASE WHEN o_started THEN
            -- (Moved as the time was; saturating, as a lease may be "for ever".)
            p_lease_until + LEAST(o_accepted_at - p_accepted_at,
                                  9223372036854775807 - p_lease_until) END,
        v_prev, o_ready)
    ON CONFLICT (id) DO NOTHING
    RETURNING seq INTO o_seq;
    IF o_seq IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'NGKWN', MESSAGE = 'request id known';
    END IF;
    UPDATE sessions SET last_task_seq = o_seq, task_count = task_count + 1
    WHERE id = p_session_id;
END;
$$;
