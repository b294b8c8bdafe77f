-- pgperf store, version 8: index advice weighs its read saving against its write cost.
--
-- Runs with search_path set to the store schema, inside one transaction. Nullable columns
-- and a column with a constant default change only the catalog (no rewrite), so this is
-- instant; advice stored before it reads as not weighed (unknown) until it is proposed again.

ALTER TABLE index_advice
    ADD COLUMN saving_per_second double precision,
    ADD COLUMN maintenance_per_second double precision,
    ADD COLUMN write_verdict text NOT NULL DEFAULT 'unknown'
        CHECK (write_verdict IN ('pays', 'write_heavy', 'unknown'));

COMMENT ON COLUMN index_advice.saving_per_second IS
  'Planner cost units per second the index saves its statements'' reads: the sum over them of calls per second '
  '(over the window their calls were counted in) times cost before less cost after. NULL when unknown (not verified '
  'by HypoPG, or no window).';
COMMENT ON COLUMN index_advice.maintenance_per_second IS
  'Planner cost units per second its upkeep costs: the table''s rows written per second times the cost of entering '
  'one row (random_page_cost plus cpu_index_tuple_cost per level of the b-tree). NULL when the write rate is unknown.';
COMMENT ON COLUMN index_advice.write_verdict IS
  'pays: the saving is at least the upkeep; write_heavy: the index would cost more to maintain than it saves at the '
  'rates of the moment (kept, not recommended); unknown: either figure is unknown.';
