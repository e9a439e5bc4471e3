# Two commands on a fresh clone: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_N ?= 100000
# the demo simulator's port: make demo PORT=18360
PORT ?= 8360
export NRS360_USER ?= demo
export NRS360_PASSWORD ?= demo-secret

.PHONY: demo test bench bench-quick lint clean postgres-bin chromium-bin

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# PostgreSQL server binaries: on PATH here; installed from Debian's packages where missing.
postgres-bin:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)

# Headless Chromium and its WebDriver for the operator page's browser tests: Debian's packages where missing.
chromium-bin:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null)

demo: $(STAMP)
	@mkdir -p demo
	@test -s demo/audience.csv || $(BIN)/python examples/audience.py demo/audience.csv $(DEMO_N) --bad 0.001
	@echo "audience: demo/audience.csv ($(DEMO_N) recipients, about 0.1% malformed on purpose)"
	@$(BIN)/python -m dispatcher simulate --only nrs360 --base-port $(PORT) > demo/simulator.log 2>&1 & echo $$! > demo/simulator.pid; \
	  for i in $$(seq 1 100); do grep -q ready demo/simulator.log && break; sleep 0.1; done; \
	  cat demo/simulator.log; \
	  $(BIN)/python -m dispatcher blast examples/demo.toml --url http://127.0.0.1:$(PORT) --run-id demo-$$(date +%Y%m%d-%H%M%S); rc=$$?; \
	  kill $$(cat demo/simulator.pid) 2>/dev/null; rm -f demo/simulator.pid; \
	  echo "results are in demo/results/ (one line per recipient); exit code $$rc (1 = some records were rejected or failed)"; \
	  test $$rc -le 1

# The throwaway cluster lives in a temp dir of its own (the postgres user may not enter this checkout);
# the trap removes it however the run ends: tests failing, Ctrl-C, or a TERM. PG_PORT=N: listen on N.
test: $(STAMP) postgres-bin chromium-bin
	@PATH="$$PATH:$$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1)"; pgdir=; \
	  trap '[ -z "$$pgdir" ] || $(BIN)/python tests/pgserver.py stop "$$pgdir"' EXIT; trap 'exit 130' INT TERM; \
	  out=$$($(BIN)/python tests/pgserver.py start $(if $(PG_PORT),--port $(PG_PORT))) || exit 1; \
	  pgdir=$$(printf '%s\n' "$$out" | head -n 1); dsn=$$(printf '%s\n' "$$out" | tail -n 1); \
	  echo "PostgreSQL for the tests: $$dsn (in $$pgdir)"; \
	  DISPATCHER_TEST_DSN=$$dsn $(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP) postgres-bin
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(BIN)/python -m bench --quick

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf demo .dispatcher examples/.dispatcher
