# proxyscale — the two set-up commands:
#   make demo   fresh machine -> .venv -> the default sweep on built-in offline data -> report
#   make test   install if needed, then every test tier this machine can run
# torch==2.13.0 is installed first and held by constraints.txt (exported as PIP_CONSTRAINT), so no
# package can pull a multi-GB CUDA build. pip only: uv/poetry miss the local CPU wheel.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HASH := $(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(HASH)
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1
PYTEST_ARGS ?=

.PHONY: install demo test lint test-unit test-slow test-slurm test-gpu system-deps slurm-up slurm-down bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --no-compile torch==2.13.0
	$(BIN)/pip install -q --no-compile -e '.[test,all]' --config-settings editable_mode=compat
	@# pip byte-compiles on one core; compileall does the same files on every core (about half of pip's install time).
	@# A file not valid for this Python (torch ships 3.12-only test helpers) is skipped, as pip skips it.
	$(BIN)/python -m compileall -qq -j 0 $(VENV)/lib || true
	rm -f $(VENV)/.installed-*
	touch $@

demo: install
	$(BIN)/proxyscale -m grid=demo hydra.launcher.n_jobs=2
	$(BIN)/proxyscale report outputs/demo
	@echo "report: $(CURDIR)/outputs/demo/report.html (and report.md, report.json)"

# Every tier this machine can run, all at once (tests/tiers.sh): the slurm tier (the suite starts a 2-node
# cluster from Debian packages) at full priority, the slow tier (and gpu, which skips without CUDA) at nice 5
# and the unit tier at nice 19, each on TEST_WORKERS pytest-xdist workers (one file per worker at a time),
# so the CPU the cluster leaves idle while its checks wait on it goes to the other tiers.
TEST_WORKERS ?= 2
test: install system-deps lint
	bash tests/tiers.sh $(BIN)/pytest $(TEST_WORKERS) $(PYTEST_ARGS)

# ruff (pinned in the test extra): the linter and the formatter's check, configured in pyproject.toml.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-unit: install
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow and not slurm and not gpu" $(PYTEST_ARGS)

test-slow: install system-deps
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile -m "slow" $(PYTEST_ARGS)

test-slurm: install system-deps
	$(BIN)/pytest -m "slurm" $(PYTEST_ARGS)

test-gpu: install
	$(BIN)/pytest -m "gpu" $(PYTEST_ARGS)

# Chromium (HTML report check) and SLURM packages; needs root, else prints a note and skips.
system-deps:
	bash tests/system-deps.sh

# A SLURM cluster on this machine (root): 2 nodes, each in its own network namespace; NODES=1 for one
# node on 127.0.0.1, NODES=3 for three. See docs/clusters.md.
slurm-up:
	$(if $(NODES),PROXYSCALE_SLURM_NODES=$(NODES) )bash launchers/slurm/cluster-up.sh

slurm-down:
	bash launchers/slurm/cluster-down.sh

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) outputs .pytest_cache
