-- SQLite's 0006 splits its depth triggers and narrows an index to settled rows. PostgreSQL
-- counts depth through the partial indexes of 0005 and has no triggers; its planner
-- already keeps settled-row queries cheap. Nothing to change here: the number keeps the
-- two dialects' migration lists in step.
SELECT 1;
