-- SQLite's depth triggers were split (see its 0006). PostgreSQL counts depth through
-- the partial indexes of 0005 and has no triggers: nothing to change here; the number
-- keeps the two dialects' migration lists in step.
SELECT 1;
