-- pgperf store, version 6: the thresholds each target is sampled with.
--
-- Runs with search_path set to the store schema, inside one transaction. It refers to no
-- table of another migration, so it applies whether or not version 5 has.
--
-- pgperf serve adds a row for each target when it starts and when a reload changes the
-- target's profile or thresholds (not at every restart with the same ones). A report of
-- a window applies the thresholds in force in it, so that a report built elsewhere (the
-- command line, with another configuration) judges the samples as they were judged when
-- taken. A few rows per target and change: no partitions, no retention.

CREATE TABLE target_settings (
    target      text NOT NULL,
    valid_from  timestamptz NOT NULL,
    profile     text NOT NULL,
    thresholds  jsonb NOT NULL,
    PRIMARY KEY (target, valid_from)
);

COMMENT ON TABLE target_settings IS
  'The profile and thresholds (the configuration''s thresholds section, as JSON) pgperf serve sampled a target '
  'with, from valid_from until the next row of the target. Reports apply the thresholds in force in their window.';
