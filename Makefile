# The README's two commands: `make demo` and `make test`. Each bootstraps .venv itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp

.PHONY: demo dashboard test faults lint typecheck check clean venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || { \
	  [ "$$(id -u)" = 0 ] && apt-get install -y -qq python3-venv >/dev/null && $(PY) -m venv $(VENV); }
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[dev,pcap,dask,stats,plot,api]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/shadowcast replay --weeks 1

# The dashboard on http://127.0.0.1:8650 over the synthetic week (stays up until Ctrl-C).
dashboard: $(STAMP)
	$(BIN)/shadowcast run --replay synthetic --speed max

test: $(STAMP)
	$(BIN)/python -m pytest

# The collector attacked from outside at scale, on loopback (not part of test or CI): one
# JSON object of figures; `make test` runs the same attacks small (tests/faults).
faults: $(STAMP)
	timeout 1800 $(BIN)/python bench/faults.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
