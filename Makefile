# pgperf — make demo | make test | make bench
# Both entry points install what they need first (Debian packages as root, a virtualenv).

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
# Debian packages the demo and the tests use (chromium: the HTML report test renders pages headless).
APT_PACKAGES ?= postgresql-15 postgresql-client-15 prometheus prometheus-alertmanager chromium

.PHONY: demo test bench deps system-deps venv docs clean

demo: deps
	$(PY) -m pgperf.devtools.demo

# pytest's exit status 5 means "no tests collected": not a failure of the suite.
test: deps
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

# Rewrites bench/README.md (about 10 minutes on 2 cores).
bench: deps
	$(PY) bench/harness.py

deps: system-deps venv

system-deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
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
	$(PY) -m pgperf.devtools.docs

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
