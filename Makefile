# The README's two commands: `make demo` and `make test`. Each bootstraps .venv itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp

.PHONY: demo dashboard test fuzz faults lint typecheck check clean venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || { \
	  [ "$$(id -u)" = 0 ] && apt-get install -y -qq python3-venv >/dev/null && $(PY) -m venv $(VENV); }
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[dev,pcap,dask,stats,plot,clickhouse,api]'
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

# Outside CI: the property tests over hostile input (marker `fuzz`) with the `fuzz` hypothesis
# profile (many more examples, a fresh random seed each round), round after round until
# FUZZ_SECONDS have passed. A failure stops it; make it an @example in the test and fix it.
FUZZ_SECONDS ?= 600
fuzz: $(STAMP)
	@end=$$(( $$(date +%s) + $(FUZZ_SECONDS) )); round=0; \
	while [ $$(date +%s) -lt $$end ]; do \
	  round=$$((round + 1)); left=$$(( end - $$(date +%s) )); \
	  echo "fuzz round $$round ($$left s left)"; \
	  HYPOTHESIS_PROFILE=fuzz timeout --signal=INT $$left \
	    $(BIN)/python -m pytest -m fuzz -q -x -p no:cacheprovider; rc=$$?; \
	  if [ $$rc -eq 124 ]; then echo "fuzz: time is up"; break; fi; \
	  [ $$rc -eq 0 ] || exit $$rc; \
	done

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
