# suite-daemon: `make run` and `make test` do all set-up on a fresh Debian machine.

# The distribution's Python when it is recent enough (on Debian, as in production per docs/deploy.md: built with
# PGO and LTO, it runs the DICOM receiver with about a fifth less CPU per object than a generic --enable-shared
# build such as pyenv's; docs/performance.md), else the first python3 on PATH.
PYTHON_USABLE := import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))
PYTHON ?= $(shell for p in /usr/bin/python3 python3; do \
	  if $$p -c '$(PYTHON_USABLE)' >/dev/null 2>&1; then echo $$p; exit 0; fi; \
	done; echo python3)
VENV := .venv
BIN := $(VENV)/bin
# Named after the Python the venv is made with: choosing another one (PYTHON=...) makes the venv again.
STAMP := $(VENV)/.installed-$(subst /,_,$(PYTHON))
CONFIG ?= config/suite.example.toml
PYTEST_ARGS ?=

# command:debian-package pairs the tests and `make run` need
SYSTEM_TOOLS := mosquitto:mosquitto mosquitto_sub:mosquitto-clients storescu:dcmtk echoscu:dcmtk socat:socat openssl:openssl

.PHONY: run test lint bench soak system-tools install clean help

help:
	@echo "make run    - install into .venv and run the daemon with the example config and simulated devices"
	@echo "make test   - install (system tools too, when root) and run the tests"
	@echo "make lint   - ruff"
	@echo "make bench  - DICOM receive benchmark beside DCMTK storescp (plain and made durable) and Orthanc"
	@echo "make soak   - the slow soak tests"

system-tools:
	@missing=""; \
	for pair in $(SYSTEM_TOOLS); do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  if ! command -v $$cmd >/dev/null 2>&1 && [ ! -x /usr/sbin/$$cmd ]; then \
	    case " $$missing " in *" $$pkg "*) ;; *) missing="$$missing $$pkg";; esac; \
	  fi; \
	done; \
	if ! $(PYTHON) -c '$(PYTHON_USABLE)' >/dev/null 2>&1; then \
	  missing="$$missing python3 python3-venv"; \
	fi; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "missing system packages:$$missing"; \
	    echo "install them with: sudo apt-get install$$missing   (Python >= 3.11 with venv is required)"; \
	    exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	@$(PYTHON) -c '$(PYTHON_USABLE)' >/dev/null 2>&1 || { echo "$(PYTHON) will not do: Python >= 3.11 with venv is required"; exit 1; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: system-tools $(STAMP)

run: install
	@bash scripts/run-example.sh $(CONFIG)

test: install
	$(BIN)/python -m pytest -q --durations=15 $(PYTEST_ARGS)

soak: install
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m mypy

# Orthanc (fsync on) is the issue's second reference: installed like the system tools, for the bench only.
bench: SYSTEM_TOOLS += Orthanc:orthanc
bench: install
	$(BIN)/python bench/store_bench.py --durable-storescp --orthanc --repeat 5

clean:
	rm -rf $(VENV) run .pytest_cache .ruff_cache .mypy_cache
