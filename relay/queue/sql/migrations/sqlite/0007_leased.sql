-- PostgreSQL's 0007 adds the index of leased deliveries that SQLite's queue has had since
-- 0006 (deliveries_leased). Nothing to change here; the number keeps both dialects'
-- migrations in step.
SELECT 1;
