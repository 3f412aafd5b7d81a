# Every target builds its own virtualenv from the pinned lock file, so a fresh
# machine needs only python3 (>= 3.11) and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-stress soak fuzz lint bench serve clean lock system-packages image

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/switchboard demo

test: $(STAMP) system-packages
	$(BIN)/python -m pytest -q

# A long randomised search over the property tests (the suite's own runs are derandomised).
# Run it before you stop; a failure prints the example and a blob to reproduce it.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q tests/test_fuzz_frames.py tests/test_protocol.py tests/test_websocket_frames.py tests/test_session_memory.py

# Long fault soaks and chaos schedules (minutes); make test runs a short version of each.
soak: $(STAMP) system-packages
	$(BIN)/python -m pytest -q -m soak

# The suite three times with a busy process on every core: what a loaded CI runner looks like.
# STRESS_ARGS narrows it, e.g. make test-stress STRESS_ARGS=tests/test_serve_drain.py
test-stress: $(STAMP) system-packages
	$(BIN)/python -m tests.stress --runs 3 -- $(STRESS_ARGS)

# Debian chromium (the dashboard's browser test) and prometheus (promtool for the alert
# rules), installed with apt when missing (as root; else it prints the command to run).
system-packages:
	@sh scripts/ensure-system-packages.sh

lint: $(STAMP)
	$(BIN)/hadolint Dockerfile
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports

# The container image the blueprint's compose and Kubernetes files run (docker or podman).
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
ENGINE  ?= $(shell command -v docker || command -v podman)
image:
	@test -n "$(ENGINE)" || { echo "make image: no container engine (docker or podman) on PATH"; exit 1; }
	$(ENGINE) build --build-arg VERSION=$(VERSION) -t switchboard:$(VERSION) .

bench: $(STAMP)
	$(BIN)/switchboard bench

serve: $(STAMP)
	$(BIN)/switchboard serve

# Re-pin every dependency from pyproject.toml (run after changing dependencies).
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/python -m pip install -q -e '.[dev]'
	.lockenv/bin/python -m pip freeze --exclude-editable | grep -v '^switchboard' > requirements.lock
	rm -rf .lockenv

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
