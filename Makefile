# Two commands: `make run` (set up, migrate, load the demo data, serve on $PORT) and `make test`.
PORT ?= 8000
VENV := .venv/bin
FLASK := $(VENV)/flask --app wsgi
export PORT

.PHONY: run test lint setup migrate demo demo-missing serve bench fuzz clean

# `make run` loads only the demo parts whose tables are empty, so an imported street network or renamed meeting
# points survive a restart; `make demo` puts the whole demo back.
run: setup migrate demo-missing serve

setup:
	@bash scripts/setup.sh

migrate:
	@$(FLASK) db upgrade

demo:
	@$(FLASK) load-demo

demo-missing:
	@$(FLASK) load-demo --only-missing

serve:
	@bash scripts/serve.sh

test: setup lint
	@$(VENV)/pytest

lint: setup
	@$(VENV)/ruff check .

# Each benchmark is a module of its own (docs/benchmarks.md gives the command of every figure): BENCH=sos etc.
BENCH ?= sos
bench: setup
	@$(VENV)/python -m bench.$(BENCH)

# The schemathesis run at full size: 500 examples per operation, every role, plus the coverage phase.
fuzz: setup
	@FUZZ_EXAMPLES=500 FUZZ_ROLES=citizen,operator,scout,admin FUZZ_COVERAGE=1 \
	  $(VENV)/pytest tests/fuzz --timeout=3600

clean:
	rm -rf .venv node_modules .pytest_cache

# The fault tests at full size (docs/reliability.md): a one-minute FCM outage, 1,000 SOS under SIGKILL.
.PHONY: faults
faults: setup
	@FAULT_OUTAGE_S=60 FAULT_SOS=1000 FAULT_SOS_SPREAD_S=60 FAULT_REDIS_DOWN_S=20 FAULT_PG_DOWN_S=20 FAULT_TICK_S=1 \
	  $(VENV)/pytest tests/faults
