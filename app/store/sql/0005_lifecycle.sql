-- Version 0005 (loaded by migration 0005): the lifecycle of app/domain/lifecycle.py, kept
-- by the database whichever statement changes a status.
--
-- The CASE expressions below are the table's own SQL (lifecycle.status_sql, phase_sql,
-- events_sql), pasted as they were when this version was written: a test fails when the
-- table changes and this file does not (a new version then replaces these functions).

-- How long a revoked lease may live after the revoke. The service sets it on each of its
-- connections (TASKMILL_CANCEL_GRACE_SECONDS); any other session gets 60 seconds.
CREATE OR REPLACE FUNCTION taskmill_cancel_grace() RETURNS interval
LANGUAGE sql STABLE AS $$
    SELECT make_interval(secs => coalesce(
        CAST(nullif(current_setting('taskmill.cancel_grace_seconds', true), '') AS float8), 60))
$$;

-- A 128-bit hash of a text written as an IPv6 address: what the fence's exclusion
-- constraint compares (inet's built-in GiST operator class has both = and <>; text's
-- needs btree_gist, which the embedded server does not ship). Two keys colliding would
-- only make the constraint refuse a lease it could have granted: it never lets one by.
CREATE OR REPLACE FUNCTION taskmill_fence_ip(x text) RETURNS inet
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CAST(regexp_replace(
        lpad(to_hex(hashtextextended(x, 1)), 16, '0') || lpad(to_hex(hashtextextended(x, 2)), 16, '0'),
        '(....)(?=.)', '\1:', 'g') AS inet)
$$;

-- The status changes the table allows (lifecycle.TRANSITIONS).
CREATE OR REPLACE FUNCTION taskmill_transition_allowed(src text, dst text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT src || '>' || dst = ANY (ARRAY[
        'blocked>cancelled', 'blocked>expired', 'blocked>paused', 'blocked>pending',
        'blocked>scheduled', 'blocked>superseded', 'cancelling>cancelled', 'cancelling>superseded',
        'paused>blocked', 'paused>cancelled', 'paused>cancelling', 'paused>expired',
        'paused>pending', 'paused>superseded', 'pending>blocked', 'pending>cancelled',
        'pending>cancelling', 'pending>expired', 'pending>paused', 'pending>running',
        'pending>superseded', 'running>cancelled', 'running>cancelling', 'running>completed',
        'running>failed', 'running>paused', 'running>pending', 'running>scheduled',
        'running>waiting', 'scheduled>blocked', 'scheduled>cancelled', 'scheduled>cancelling',
        'scheduled>expired', 'scheduled>paused', 'scheduled>pending', 'scheduled>superseded',
        'waiting>cancelled', 'waiting>cancelling', 'waiting>failed', 'waiting>paused',
        'waiting>pending', 'waiting>scheduled'
    ])
$$;

-- Every status change: refuse one the table does not have (a bug must fail loudly, not
-- run twice), stamp finished_at on entering a terminal status, and drop the lease of a
-- task that no longer runs.
CREATE OR REPLACE FUNCTION taskmill_before_status() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT taskmill_transition_allowed(OLD.status, NEW.status) THEN
        RAISE EXCEPTION 'task % cannot go from % to %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ck_tasks_transition';
    END IF;
    IF NEW.status IN ('completed', 'failed', 'cancelled', 'superseded', 'expired') THEN
        NEW.finished_at := now();
    END IF;
    IF NEW.status NOT IN ('running', 'cancelling') THEN
        NEW.lease_expires_at := NULL;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER taskmill_before_status BEFORE UPDATE OF status ON tasks
FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
EXECUTE FUNCTION taskmill_before_status();

-- The outbox rows of one change: one per announced name, in order.
CREATE OR REPLACE FUNCTION taskmill_events(names text[], t tasks, extra jsonb) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO events (event, task_id, type, group_name, tags, data)
    SELECT e.name, t.id, t.type, t.group_name, t.tags,
        jsonb_build_object('status', t.status, 'attempt', t.attempt, 'priority', t.priority,
            'phase', t.phase) || extra
    FROM unnest(names) WITH ORDINALITY AS e(name, ord)
    ORDER BY e.ord
$$;

-- The table's cancel event on the live tasks named (a producer's cancel, a supersede, a
-- cascade): those that never ran in this phase end at once; a running one is revoked
-- (cancelling, its lease capped at the grace); one whose execute phase ended (waiting,
-- or queued for finalize) awaits a cancel-phase lease to run its on_cancel.
CREATE OR REPLACE FUNCTION taskmill_cancel(
    ids text[], reason text, superseded text, cascaded boolean)
RETURNS SETOF tasks
LANGUAGE plpgsql AS $$
DECLARE
    c tasks;
BEGIN
    FOR c IN
        UPDATE tasks t SET
            status = CASE WHEN (t.status IN ('pending', 'scheduled', 'blocked', 'paused')) AND (t.phase = 'execute') THEN CASE WHEN reason = 'superseded' THEN 'superseded' ELSE 'cancelled' END WHEN (t.status IN ('pending', 'scheduled', 'paused')) AND (t.phase = 'finalize') THEN 'cancelling' WHEN (t.status IN ('running')) THEN 'cancelling' WHEN (t.status IN ('waiting')) THEN 'cancelling' ELSE t.status END,
            phase = CASE WHEN (t.status IN ('pending', 'scheduled', 'blocked', 'paused')) AND (t.phase = 'execute') THEN t.phase WHEN (t.status IN ('pending', 'scheduled', 'paused')) AND (t.phase = 'finalize') THEN 'cancel' WHEN (t.status IN ('running')) THEN t.phase WHEN (t.status IN ('waiting')) THEN 'cancel' ELSE t.phase END,
            cancel_reason = reason,
            superseded_by = coalesce(superseded, t.superseded_by),
            cancel_deadline = CASE WHEN t.status = 'running'
                THEN now() + taskmill_cancel_grace() END,
            lease_expires_at = CASE WHEN t.status = 'running'
                THEN least(t.lease_expires_at, now() + taskmill_cancel_grace()) END,
            updated_at = now()
        WHERE t.id = ANY(ids) AND t.status IN ('pending', 'scheduled', 'blocked', 'running', 'waiting', 'paused')
        RETURNING t.*
    LOOP
        PERFORM taskmill_events(CASE c.status WHEN 'cancelled' THEN ARRAY['task.cancelled'] WHEN 'cancelling' THEN ARRAY['task.cancelling'] WHEN 'superseded' THEN ARRAY['task.superseded'] ELSE CAST(ARRAY[] AS text[]) END, c,
            jsonb_build_object('reason', reason)
            || jsonb_strip_nulls(jsonb_build_object('superseded_by', superseded,
                'cascade', CASE WHEN cascaded THEN true END)));
        IF c.status = 'cancelling' AND c.lease_expires_at IS NULL AND c.children_live = 0 THEN
            PERFORM pg_notify('taskmill_work', '');  -- its on_cancel can be leased now
        END IF;
        RETURN NEXT c;
    END LOOP;
END $$;

-- An operator's force cancel: the task and every descendant not yet over end at once,
-- leases or not (their workers' late calls answer 409).
CREATE OR REPLACE FUNCTION taskmill_force(root text) RETURNS SETOF tasks
LANGUAGE plpgsql AS $$
DECLARE
    c tasks;
BEGIN
    FOR c IN
        WITH RECURSIVE sub(id) AS (
            SELECT root
            UNION ALL
            SELECT k.id FROM tasks k JOIN sub ON k.parent_id = sub.id
        )
        UPDATE tasks t SET
            status = CASE WHEN (t.status IN ('pending', 'scheduled', 'blocked', 'running', 'waiting', 'paused')) THEN 'cancelled' WHEN (t.status IN ('cancelling')) THEN CASE WHEN t.cancel_reason = 'superseded' THEN 'superseded' ELSE 'cancelled' END ELSE t.status END,
            cancel_reason = coalesce(t.cancel_reason, 'cancelled'),
            updated_at = now()
        FROM sub WHERE t.id = sub.id AND NOT t.status IN ('completed', 'failed', 'cancelled', 'superseded', 'expired')
        RETURNING t.*
    LOOP
        PERFORM taskmill_events(CASE c.status WHEN 'cancelled' THEN ARRAY['task.cancelled'] WHEN 'superseded' THEN ARRAY['task.superseded'] ELSE CAST(ARRAY[] AS text[]) END, c,
            jsonb_build_object('reason', c.cancel_reason, 'forced', true)
            || jsonb_strip_nulls(jsonb_build_object('superseded_by', c.superseded_by)));
        RETURN NEXT c;
    END LOOP;
END $$;

-- A cancelling task x ended: release the blocked tasks that now wait on nothing. They are
-- locked first and decided by a later statement, whose snapshot is taken after the locks:
-- two blockers ending at once each see the other's end (the second to get the lock does),
-- and a task blocked by a submit that is still running is locked by it until it commits.
CREATE OR REPLACE FUNCTION taskmill_unblock(x tasks) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer := 0;
    r tasks;
BEGIN
    PERFORM 1 FROM tasks b
    WHERE b.status = 'blocked'
      AND (b.fence_key = x.fence_key OR (b.type = x.type AND b.dedup_key = x.dedup_key))
    ORDER BY b.id
    FOR UPDATE;
    FOR r IN
        UPDATE tasks b SET status = CASE WHEN (b.status IN ('blocked')) AND (NOT EXISTS (SELECT 1 FROM tasks o WHERE o.status = 'cancelling' AND o.id <> b.id AND ((o.fence_key = b.fence_key AND o.fence_gen <> b.fence_gen) OR (o.type = b.type AND o.dedup_key = b.dedup_key)))) THEN CASE WHEN b.run_after > now() THEN 'scheduled' WHEN EXISTS (SELECT 1 FROM groups g WHERE g.name = b.group_name AND g.paused) THEN 'paused' ELSE 'pending' END ELSE b.status END, updated_at = now()
        WHERE b.status = 'blocked'
          AND (b.fence_key = x.fence_key OR (b.type = x.type AND b.dedup_key = x.dedup_key))
          AND NOT EXISTS (SELECT 1 FROM tasks o WHERE o.status = 'cancelling' AND o.id <> b.id AND ((o.fence_key = b.fence_key AND o.fence_gen <> b.fence_gen) OR (o.type = b.type AND o.dedup_key = b.dedup_key)))
        RETURNING b.*
    LOOP
        PERFORM taskmill_events(CASE r.status WHEN 'paused' THEN ARRAY['task.unblocked'] WHEN 'pending' THEN ARRAY['task.unblocked'] WHEN 'scheduled' THEN ARRAY['task.unblocked'] ELSE CAST(ARRAY[] AS text[]) END, r,
            jsonb_build_object('blocked_on', r.blocked_on));
        IF r.status = 'pending' THEN
            PERFORM pg_notify('taskmill_work', '');
        END IF;
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;

-- The reactions of lifecycle.REACTIONS, after any statement changed a status.
CREATE OR REPLACE FUNCTION taskmill_status_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    p tasks;
    q tasks;
    ended boolean := NEW.status IN ('completed', 'failed', 'cancelled', 'superseded', 'expired');
BEGIN
    -- cascade: a run that ended other than by completing takes its live children along.
    IF NEW.children_live > 0 AND NEW.status NOT IN ('running', 'waiting', 'completed') THEN
        PERFORM taskmill_cancel(ARRAY(SELECT k.id FROM tasks k
            WHERE k.parent_id = NEW.id AND k.status IN ('pending', 'scheduled', 'blocked', 'running', 'waiting', 'paused') ORDER BY k.id), 'cancelled', NULL, true);
    END IF;
    -- count: an ended child updates its parent's counters; the parent may finalize or fail.
    IF ended AND NEW.parent_id IS NOT NULL THEN
        UPDATE tasks SET children_live = children_live - 1,
            children_completed = children_completed + CAST(NEW.status = 'completed' AS int),
            children_failed = children_failed + CAST(NEW.status = 'failed' AS int)
        WHERE id = NEW.parent_id RETURNING * INTO p;
        IF NEW.status = 'failed' AND p.fail_fast THEN
            PERFORM taskmill_cancel(ARRAY(SELECT k.id FROM tasks k
                WHERE k.parent_id = p.id AND k.status IN ('pending', 'scheduled', 'blocked', 'running', 'waiting', 'paused') ORDER BY k.id), 'cancelled', NULL, true);
            SELECT * INTO p FROM tasks WHERE id = p.id;
        END IF;
        FOR q IN
            UPDATE tasks w SET
                status = CASE WHEN (w.status IN ('waiting')) AND (w.fail_fast AND w.children_failed > 0) THEN 'failed' WHEN (w.status IN ('waiting')) AND (w.children_live = 0) THEN CASE WHEN w.run_after > now() THEN 'scheduled' WHEN EXISTS (SELECT 1 FROM groups g WHERE g.name = w.group_name AND g.paused) THEN 'paused' ELSE 'pending' END ELSE w.status END,
                phase = CASE WHEN (w.status IN ('waiting')) AND (w.fail_fast AND w.children_failed > 0) THEN w.phase WHEN (w.status IN ('waiting')) AND (w.children_live = 0) THEN 'finalize' ELSE w.phase END,
                error = CASE WHEN w.fail_fast AND w.children_failed > 0
                    THEN jsonb_build_object('message', 'a child task failed', 'child_id', NEW.id)
                    ELSE w.error END,
                updated_at = now()
            WHERE w.id = NEW.parent_id
              AND w.status IS DISTINCT FROM CASE WHEN (w.status IN ('waiting')) AND (w.fail_fast AND w.children_failed > 0) THEN 'failed' WHEN (w.status IN ('waiting')) AND (w.children_live = 0) THEN CASE WHEN w.run_after > now() THEN 'scheduled' WHEN EXISTS (SELECT 1 FROM groups g WHERE g.name = w.group_name AND g.paused) THEN 'paused' ELSE 'pending' END ELSE w.status END
            RETURNING w.*
        LOOP
            PERFORM taskmill_events(CASE q.status WHEN 'failed' THEN ARRAY['task.failed'] WHEN 'paused' THEN ARRAY['task.finalizing'] WHEN 'pending' THEN ARRAY['task.finalizing'] WHEN 'scheduled' THEN ARRAY['task.finalizing'] ELSE CAST(ARRAY[] AS text[]) END, q,
                CASE WHEN q.status = 'failed' THEN jsonb_build_object('error', q.error)
                     ELSE '{}'::jsonb END);
            IF q.status = 'pending' THEN
                PERFORM pg_notify('taskmill_work', '');
            END IF;
        END LOOP;
        IF p.status = 'cancelling' AND p.lease_expires_at IS NULL AND p.children_live = 0 THEN
            PERFORM pg_notify('taskmill_work', '');  -- a cancelled parent's on_cancel can be leased now
        END IF;
    END IF;
    -- unblock: a cancelling task that ended may free the blocked tasks of its keys.
    IF ended AND OLD.status = 'cancelling'
       AND (NEW.fence_key IS NOT NULL OR NEW.dedup_key IS NOT NULL) THEN
        PERFORM taskmill_unblock(NEW);
    END IF;
    RETURN NULL;
END $$;

-- A supersede's first half, in one round trip: queue on the key's lock (supersedes of one
-- key take turns, so each finds the holder the one before left), lock the key's cancelling
-- tasks FOR SHARE before the holder (a worker's acknowledgement locks them in that order:
-- both then queue instead of deadlocking), then lock the live holder and cancel it with
-- reason superseded. Each statement takes its snapshot after the locks before it. Returns
-- the holder as it was, or nothing when the key is free.
CREATE OR REPLACE FUNCTION taskmill_supersede(task_type text, dedup text, superseded text)
RETURNS TABLE (id text, status text, phase text, seq bigint, state_from text,
    leased boolean, has_state boolean)
LANGUAGE plpgsql AS $$
DECLARE
    h record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('taskmill.key.' || task_type || '/' || dedup, 0));
    PERFORM 1 FROM tasks o
    WHERE o.status = 'cancelling'
      AND (o.fence_key = task_type || '/' || dedup OR (o.type = task_type AND o.dedup_key = dedup))
    ORDER BY o.id
    FOR SHARE;
    SELECT t.id, t.status, t.phase, t.seq, t.state_from, t.lease_expires_at IS NOT NULL AS leased,
        t.state IS NOT NULL AND t.state <> '{}'::jsonb AS has_state
    INTO h
    FROM tasks t
    WHERE t.type = task_type AND t.dedup_key = dedup AND t.status IN ('pending', 'scheduled', 'blocked', 'running', 'waiting', 'paused')
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM taskmill_cancel(ARRAY[h.id], 'superseded', superseded, false);
    RETURN QUERY SELECT h.id, h.status, h.phase, h.seq, h.state_from, h.leased, h.has_state;
END $$;

-- Replaced by the functions above.
DROP FUNCTION taskmill_unblock_for(text);
DROP FUNCTION taskmill_subtree_clear(text);
DROP FUNCTION taskmill_cancel_children(text);
DROP FUNCTION taskmill_event(text, tasks, jsonb);
