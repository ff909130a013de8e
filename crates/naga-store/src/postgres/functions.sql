-- PostgreSQL's accept rules: the functions that store a batch, or say why
-- not (`postgres/accept.rs` calls them). Applied at every start, after the
-- migrations (`CREATE OR REPLACE`, under an advisory lock so that nodes
-- starting together take turns): a change to a rule is a change to this
-- file, not a new migration. A change to a function's parameters or OUT
-- columns needs a `DROP FUNCTION` of the old one first. Migration 0006 made
-- their first version. Every outcome is tested on both backends from one
-- table of cases (`tests/accept_outcomes.rs`).
--
-- A batch is not refused by raising: the batches a node accepts at the
-- same moment are stored by one statement (`naga_accept_group`), and one
-- refused must not undo the others; each batch's decisions come back as a
-- row, and what a refused batch made (its session's row, its analysis
-- session) is deleted again before the statement ends. A lone batch is
-- stored by `naga_accept_one`.
--
-- o_code: NULL when stored, else why not, with o_message:
--   NGBSY  a `reject` batch, and the session has unfinished batches;
--   NGDUP  an identical batch is still active: o_message = its seq;
--   NGANA  the analysis session belongs to another session: o_message = it;
--   NGKWN  the request id is known (the caller reads what it was);
--   NGPRN  the request id was a task's that has been pruned (its row in
--          `pruned_tasks`: the caller reads it).
--
-- In READ COMMITTED each statement of a (volatile) function sees what was
-- committed before it began: every read below comes after the session's
-- row is locked, so it sees the session's batches accepted before.

CREATE OR REPLACE FUNCTION naga_accept_one(
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
    OUT o_code TEXT,
    OUT o_message TEXT,
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
    v_made_session BOOLEAN := FALSE;
    v_made_analysis BOOLEAN := FALSE;
BEGIN
    -- The session's row, locked (made if missing): its batches join its
    -- chain (tasks.prev_seq) one at a time.
    SELECT s.last_task_seq INTO v_prev FROM sessions s WHERE s.id = p_session_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO sessions (id, created_at, last_activity_at)
        VALUES (p_session_id, p_accepted_at, p_accepted_at)
        ON CONFLICT (id) DO NOTHING;
        v_made_session := FOUND;
        SELECT s.last_task_seq INTO v_prev FROM sessions s WHERE s.id = p_session_id FOR UPDATE;
    END IF;

    -- A session's batches are stored in the order of their times, and one
    -- that starts at once does not start before the one before it ended.
    SELECT GREATEST(p_accepted_at, t.accepted_at, t.finished_at) INTO o_accepted_at
    FROM tasks t WHERE t.seq = v_prev;
    o_accepted_at := COALESCE(o_accepted_at, p_accepted_at);

    v_busy := EXISTS (SELECT 1 FROM tasks t WHERE t.session_id = p_session_id
                      AND t.status IN ('queued', 'running'));
    IF EXISTS (SELECT 1 FROM pruned_tasks p WHERE p.id = p_id) THEN
        -- (Or found again after the insert below, when a prune commits
        -- meanwhile.)
        o_code := 'NGPRN';
        o_message := 'request id pruned';
    ELSIF v_busy AND p_policy = 'reject'
       AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = p_id) THEN
        o_code := 'NGBSY';
        o_message := 'session busy';
    ELSIF p_fingerprint IS NOT NULL THEN
        SELECT t.seq INTO v_active FROM tasks t
        WHERE t.session_id = p_session_id AND t.fingerprint = p_fingerprint
          AND t.status IN ('queued', 'running')
        ORDER BY t.seq LIMIT 1;
        -- (A known request id answers as itself, below.)
        IF v_active IS NOT NULL AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = p_id) THEN
            o_code := 'NGDUP';
            o_message := v_active::TEXT;
        END IF;
    END IF;

    IF o_code IS NULL AND p_analysis_session_id IS NOT NULL THEN
        o_analysis_owner := p_analysis_owner;
        IF o_analysis_owner IS NULL THEN
            INSERT INTO analysis_sessions (id, session_id, created_at)
            VALUES (p_analysis_session_id, p_session_id, o_accepted_at)
            ON CONFLICT (id) DO NOTHING
            RETURNING session_id INTO o_analysis_owner;
            v_made_analysis := o_analysis_owner IS NOT NULL;
            IF o_analysis_owner IS NULL THEN
                SELECT a.session_id INTO o_analysis_owner FROM analysis_sessions a
                WHERE a.id = p_analysis_session_id;
            END IF;
        END IF;
        IF o_analysis_owner <> p_session_id THEN
            o_code := 'NGANA';
            o_message := o_analysis_owner;
        END IF;
    END IF;

    IF o_code IS NULL THEN
        o_ready := NOT v_busy OR p_policy = 'parallel';
        o_started := p_start AND o_ready;
        INSERT INTO tasks (id, kind, session_id, analysis_session_id, query, callback_url,
            policy, fingerprint, status, calls_count, calls, response, accepted_at, started_at,
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
            o_code := 'NGKWN';
            o_message := 'request id known';
        ELSIF EXISTS (SELECT 1 FROM pruned_tasks p WHERE p.id = p_id) THEN
            -- A prune of this request id's task committed while this insert
            -- waited for it (the id's row was being deleted): not run again.
            DELETE FROM tasks WHERE seq = o_seq;
            o_code := 'NGPRN';
            o_message := 'request id pruned';
        END IF;
    END IF;

    IF o_code IS NOT NULL THEN
        -- Not stored: what this made goes again (nobody else sees it yet).
        IF v_made_analysis THEN
            DELETE FROM analysis_sessions WHERE id = p_analysis_session_id;
        END IF;
        IF v_made_session THEN
            DELETE FROM sessions WHERE id = p_session_id;
        END IF;
        o_seq := NULL;
        o_started := NULL;
        o_ready := NULL;
        RETURN;
    END IF;
    UPDATE sessions SET last_activity_at = GREATEST(last_activity_at, p_accepted_at),
                        last_task_seq = o_seq, task_count = task_count + 1
    WHERE id = p_session_id;
END;
$$;

-- Many batches, one row each (g_i: its index in the arrays, from 1), in
-- the arrays' order. The caller sorts them by session (keeping each
-- session's order), so that two groups lock their sessions' rows in the
-- same order.
CREATE OR REPLACE FUNCTION naga_accept_group(
    p_id TEXT[],
    p_kind TEXT[],
    p_session_id TEXT[],
    p_analysis_session_id TEXT[],
    p_analysis_owner TEXT[],
    p_query TEXT[],
    p_callback_url TEXT[],
    p_policy TEXT[],
    p_fingerprint TEXT[],
    p_calls_count BIGINT[],
    p_calls TEXT[],
    p_response TEXT[],
    p_accepted_at BIGINT[],
    p_start BOOLEAN[],
    p_lease_owner TEXT[],
    p_lease_until BIGINT[])
RETURNS TABLE (g_i INT, g_code TEXT, g_message TEXT, g_seq BIGINT, g_started BOOLEAN,
               g_ready BOOLEAN, g_accepted_at BIGINT, g_analysis_owner TEXT)
LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. COALESCE(array_length(p_id, 1), 0) LOOP
        g_i := i;
        SELECT a.o_code, a.o_message, a.o_seq, a.o_started, a.o_ready, a.o_accepted_at,
               a.o_analysis_owner
        INTO g_code, g_message, g_seq, g_started, g_ready, g_accepted_at, g_analysis_owner
        FROM naga_accept_one(p_id[i], p_kind[i], p_session_id[i], p_analysis_session_id[i],
                             p_analysis_owner[i], p_query[i], p_callback_url[i], p_policy[i],
                             p_fingerprint[i], p_calls_count[i], p_calls[i], p_response[i],
                             p_accepted_at[i], p_start[i], p_lease_owner[i],
                             p_lease_until[i]) a;
        RETURN NEXT;
    END LOOP;
END;
$$;
