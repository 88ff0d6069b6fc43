-- Version 0002 (loaded by migration 0002): blocked successors, child counters and
-- cascades. Kept as it was applied; later versions replace these objects.

CREATE FUNCTION taskmill_event(ev text, t tasks, extra jsonb) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO events (event, task_id, type, group_name, tags, data)
    VALUES (ev, t.id, t.type, t.group_name, t.tags,
        jsonb_build_object('status', t.status, 'attempt', t.attempt, 'priority', t.priority)
        || extra)
$$;

CREATE FUNCTION taskmill_subtree_clear(root text) RETURNS boolean
LANGUAGE sql AS $$
    -- True when root and every descendant are terminal.
    WITH RECURSIVE d(id, status) AS (
        SELECT id, status FROM tasks WHERE id = root
        UNION ALL
        SELECT c.id, c.status FROM tasks c JOIN d ON c.parent_id = d.id
    )
    SELECT NOT EXISTS (SELECT 1 FROM d WHERE d.status NOT IN ('completed', 'failed', 'cancelled', 'superseded', 'expired'))
$$;

CREATE FUNCTION taskmill_unblock_for(x text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer := 0;
    b tasks;
BEGIN
    -- Blocked tasks wait on a task and its whole subtree: x or any ancestor of x.
    FOR b IN
        WITH RECURSIVE up(id, parent_id) AS (
            SELECT id, parent_id FROM tasks WHERE id = x
            UNION ALL
            SELECT p.id, p.parent_id FROM tasks p JOIN up ON p.id = up.parent_id
        )
        SELECT t.* FROM tasks t
        WHERE t.status = 'blocked' AND t.blocked_on IN (SELECT id FROM up)
        ORDER BY t.id
        FOR UPDATE OF t
    LOOP
        IF taskmill_subtree_clear(b.blocked_on) THEN
            UPDATE tasks t SET status = CASE WHEN t.run_after > now() THEN 'scheduled'
    WHEN EXISTS (SELECT 1 FROM groups g WHERE g.name = t.group_name AND g.paused) THEN 'paused'
    ELSE 'pending' END, updated_at = now()
            WHERE t.id = b.id RETURNING t.* INTO b;
            PERFORM taskmill_event('task.unblocked', b, jsonb_build_object('blocked_on', b.blocked_on));
            IF b.status = 'pending' THEN
                PERFORM pg_notify('taskmill_work', '');
            END IF;
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END $$;

CREATE FUNCTION taskmill_cancel_children(parent text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    c tasks;
BEGIN
    -- Live unleased children end at once; leased ones are revoked (their workers run
    -- on_cancel and acknowledge). Their own triggers carry this to every depth.
    FOR c IN
        UPDATE tasks t SET
            status = CASE WHEN t.status = 'running' THEN 'cancelling' ELSE 'cancelled' END,
            cancel_reason = 'cancelled',
            finished_at = CASE WHEN t.status = 'running' THEN NULL ELSE now() END,
            updated_at = now()
        WHERE t.parent_id = parent AND t.status IN ('pending', 'scheduled', 'blocked', 'running', 'waiting', 'paused')
        RETURNING t.*
    LOOP
        PERFORM taskmill_event(
            CASE WHEN c.status = 'cancelling' THEN 'task.cancelling' ELSE 'task.cancelled' END,
            c, jsonb_build_object('reason', 'cancelled', 'cascade', true));
    END LOOP;
END $$;

CREATE FUNCTION taskmill_child_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tasks SET children_total = children_total + 1, children_live = children_live + 1
    WHERE id = NEW.parent_id;
    RETURN NULL;
END $$;

CREATE FUNCTION taskmill_status_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    p tasks;
    ended boolean := NEW.status IN ('completed', 'failed', 'cancelled', 'superseded', 'expired') AND OLD.status NOT IN ('completed', 'failed', 'cancelled', 'superseded', 'expired');
BEGIN
    -- Down: a run that ended other than by completing takes its live descendants along.
    IF NEW.children_live > 0 AND NEW.status NOT IN ('running', 'waiting', 'completed') THEN
        PERFORM taskmill_cancel_children(NEW.id);
    END IF;
    -- Up: an ended child updates its parent's counters; the parent may now finalize or fail.
    IF ended AND NEW.parent_id IS NOT NULL THEN
        UPDATE tasks SET children_live = children_live - 1,
            children_completed = children_completed + (NEW.status = 'completed')::int,
            children_failed = children_failed + (NEW.status = 'failed')::int
        WHERE id = NEW.parent_id RETURNING * INTO p;
        IF NEW.status = 'failed' AND p.fail_fast THEN
            -- fail_fast: the live siblings are cancelled; a waiting parent fails now, a
            -- running one fails when it reports completion.
            PERFORM taskmill_cancel_children(p.id);
            SELECT * INTO p FROM tasks WHERE id = p.id;
        END IF;
        IF p.status = 'waiting' AND p.fail_fast AND p.children_failed > 0 THEN
            UPDATE tasks t SET status = 'failed', finished_at = now(), updated_at = now(),
                error = jsonb_build_object('message', 'a child task failed', 'child_id', NEW.id)
            WHERE t.id = p.id RETURNING t.* INTO p;
            PERFORM taskmill_event('task.failed', p, jsonb_build_object('error', p.error));
        ELSIF p.status = 'waiting' AND p.children_live = 0 THEN
            UPDATE tasks t SET status = CASE WHEN t.run_after > now() THEN 'scheduled'
    WHEN EXISTS (SELECT 1 FROM groups g WHERE g.name = t.group_name AND g.paused) THEN 'paused'
    ELSE 'pending' END, phase = 'finalize', updated_at = now()
            WHERE t.id = p.id RETURNING t.* INTO p;
            PERFORM taskmill_event('task.finalizing', p, '{}'::jsonb);
            PERFORM pg_notify('taskmill_work', '');
        END IF;
    END IF;
    -- A revoked task, or a descendant of one, that ended may release a blocked successor.
    IF ended AND (OLD.status = 'cancelling' OR NEW.parent_id IS NOT NULL) THEN
        PERFORM taskmill_unblock_for(NEW.id);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER taskmill_child_inserted AFTER INSERT ON tasks
FOR EACH ROW WHEN (NEW.parent_id IS NOT NULL)
EXECUTE FUNCTION taskmill_child_inserted();

CREATE TRIGGER taskmill_status_changed AFTER UPDATE OF status ON tasks
FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status AND (
    NEW.parent_id IS NOT NULL OR NEW.children_live > 0 OR OLD.status = 'cancelling'))
EXECUTE FUNCTION taskmill_status_changed();
