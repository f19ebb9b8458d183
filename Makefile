# Two commands for a newcomer: `make demo` runs the whole path here, `make test` runs every check.
# Both create .venv from pyproject.toml on first use and start RabbitMQ if it is installed but down.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo demo-sinks test lint unit bench clean

# The product, its development tools, and every plugin distribution under plugins/.
$(VENV)/.installed: pyproject.toml devtools/pyproject.toml $(wildcard plugins/*/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]' -e ./devtools $(foreach p,$(wildcard plugins/*/pyproject.toml),-e './$(dir $(p))[test]')
	touch $@

demo: $(VENV)/.installed
	$(PY) -m videoworker_devtools.rabbit
	$(VENV)/bin/videoworker demo

# The same, plus S3 (moto), a signed webhook and a Slack message, all received locally.
demo-sinks: $(VENV)/.installed
	$(PY) -m videoworker_devtools.rabbit
	$(VENV)/bin/videoworker demo --sinks

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Two phases (tests/serial.py): every test but those marked `serial` in TEST_WORKERS parallel workers,
# then the `serial` ones (they stop RabbitMQ) on their own. Both always run; PYTEST_ARGS goes to both.
TEST_WORKERS ?= 4
PYTEST := $(PY) -m pytest -q -p no:cacheprovider -p tests.serial

test: lint
	$(PY) -m videoworker_devtools.rabbit
	$(PYTEST) --serial=skip -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS); parallel=$$?; \
	$(PYTEST) --serial=only $(PYTEST_ARGS); serial=$$?; \
	test $$parallel -eq 0 && test $$serial -eq 0

unit: $(VENV)/.installed
	$(PY) -m pytest -q tests/unit

# The standard size (under 3 minutes): the floor, then the daemon with callbacks, then polling only.
bench: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m videoworker_devtools.rabbit
	$(PY) bench/poll_curve.py --png docs/poll-curve.png
	$(PY) bench/throughput.py --floor --modes callbacks polling

clean:
	rm -rf $(VENV) data demo-data .pytest_cache .mypy_cache .ruff_cache
