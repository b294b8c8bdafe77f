"""Tools for trying pgperf and for its tests: a throwaway PostgreSQL, workloads, the demo."""
