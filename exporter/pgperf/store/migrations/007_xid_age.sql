-- pgperf store, version 7: the transaction ID age of each sample, for wraparound forecasts.
--
-- Runs with search_path set to the store schema, inside one transaction. Adding a
-- nullable column without a default changes only the catalog (no rewrite of the
-- partitions), so it is instant on a store of any size; rows written before it hold NULL.

ALTER TABLE resource_metrics ADD COLUMN xid_age bigint;

COMMENT ON COLUMN resource_metrics.xid_age IS
  'The highest age(datfrozenxid) over the databases at sample time (the wraparound collector): PostgreSQL stops '
  'assigning transaction IDs when it nears 2^31. NULL when the collector did not run.';
