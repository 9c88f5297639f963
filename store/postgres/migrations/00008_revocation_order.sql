-- The revocation feed's order becomes commit order (issue 11, review 3).
--
-- 00004 ordered events by (xid, seq) and let a reader read only below its
-- snapshot's xmin, so that nothing could be inserted among what it had
-- read. But xmin is cluster-wide: any transaction left open on the
-- cluster, by any application in any database, held every later event
-- back while the feed looked healthy.
--
-- Now each event gets its place, pos, when its transaction commits: a
-- deferred constraint trigger (it fires inside COMMIT, after everything
-- else the transaction did) locks the revocation_feed row, adds the
-- transaction's events to its counter last_pos and numbers them from it.
-- The row stays locked until the commit is visible, so of two
-- transactions writing events the second numbers its events only after
-- the first's are visible: pos order is commit order, a snapshot that
-- sees an event sees every event below it, and pos has no gaps (the
-- counter rolls back with an aborted transaction). A reader reads
-- "pos > cursor" and is done: nothing can appear below what it has read,
-- and no transaction outside the revocations can delay it.
--
-- The lock is taken last, inside COMMIT: a transaction holding it waits
-- for nothing but its commit, so it cannot take part in a deadlock, and
-- token writes, refresh rotation and revocations run concurrently as
-- before; only the commits of transactions that write events follow one
-- another. Transactions that write no event never touch the row.
--
-- revocation_feed.purged_pos is the highest pos deleted (a cursor below it
-- has missed events). A statement trigger keeps it, whichever statement
-- deletes events.
--
-- Events kept from before are numbered in their old (xid, seq) order;
-- cursors given out before ("xid.seq") are no longer understood, and a
-- subscriber presenting one gets a reset. purged_xid and purged_seq stay
-- for nodes of the previous version still running during an upgrade (the
-- triggers number and account for their events too).

-- +goose Up
ALTER TABLE revocation_events ADD COLUMN pos bigint;
ALTER TABLE revocation_feed ADD COLUMN last_pos bigint NOT NULL DEFAULT 0,
    ADD COLUMN purged_pos bigint NOT NULL DEFAULT 0;

-- If events were deleted before, cursor 0 (before them) is expired: the
-- kept events are numbered from 2 and purged_pos is 1.
UPDATE revocation_events e SET pos = o.n + (SELECT CASE WHEN f.purged_xid <> '0' THEN 1 ELSE 0 END FROM revocation_feed f WHERE f.id = 1)
    FROM (SELECT xid, seq, row_number() OVER (ORDER BY xid, seq) AS n FROM revocation_events) o
    WHERE e.xid = o.xid AND e.seq = o.seq;
UPDATE revocation_feed SET purged_pos = CASE WHEN purged_xid <> '0' THEN 1 ELSE 0 END WHERE id = 1;
UPDATE revocation_feed SET last_pos = GREATEST(purged_pos, (SELECT COALESCE(max(pos), 0) FROM revocation_events)) WHERE id = 1;

CREATE UNIQUE INDEX revocation_events_pos ON revocation_events (pos) WHERE pos IS NOT NULL;

-- +goose StatementBegin
CREATE FUNCTION revocation_events_number() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n    bigint;
    last bigint;
BEGIN
    -- The first firing in a transaction numbers all its events; the
    -- others find their row numbered already.
    PERFORM 1 FROM revocation_events WHERE xid = NEW.xid AND seq = NEW.seq AND pos IS NULL;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT count(*) INTO n FROM revocation_events WHERE xid = NEW.xid AND pos IS NULL;
    UPDATE revocation_feed SET last_pos = last_pos + n WHERE id = 1 RETURNING last_pos INTO last;
    UPDATE revocation_events e SET pos = last - n + o.rn
        FROM (SELECT seq, row_number() OVER (ORDER BY seq) AS rn FROM revocation_events
              WHERE xid = NEW.xid AND pos IS NULL) o
        WHERE e.xid = NEW.xid AND e.seq = o.seq;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE CONSTRAINT TRIGGER revocation_events_number AFTER INSERT ON revocation_events
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION revocation_events_number();

-- +goose StatementBegin
CREATE FUNCTION revocation_events_purged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE revocation_feed f SET purged_pos = g.pos
        FROM (SELECT max(pos) AS pos FROM gone) g
        WHERE f.id = 1 AND g.pos > f.purged_pos;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER revocation_events_purged AFTER DELETE ON revocation_events
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION revocation_events_purged();

-- +goose Down
DROP TRIGGER revocation_events_purged ON revocation_events;
DROP FUNCTION revocation_events_purged();
DROP TRIGGER revocation_events_number ON revocation_events;
DROP FUNCTION revocation_events_number();
DROP INDEX revocation_events_pos;
ALTER TABLE revocation_feed DROP COLUMN purged_pos, DROP COLUMN last_pos;
ALTER TABLE revocation_events DROP COLUMN pos;
