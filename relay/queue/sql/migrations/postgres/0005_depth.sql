-- Queue depth from indexes alone: the console, /metrics and notices ask for it often,
-- and counting a million pending rows through the table took most of a second. Only
-- open deliveries (pending, dead) are in the first index; the second holds only the
-- retrying ones, so an event accepted and delivered at once never touches it.
-- (SQLite keeps a table of counts instead; here a shared counter row would serialise
-- every instance's transactions.)
CREATE INDEX relay_deliveries_open ON relay_deliveries (destination, state, created_at)
    WHERE state IN ('pending', 'dead');
CREATE INDEX relay_deliveries_retrying ON relay_deliveries (destination)
    WHERE state = 'pending' AND last_error IS NOT NULL;
