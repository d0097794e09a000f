# idrun — developer entry points. `make help` lists them.
#
# Everything a fresh Debian machine lacks is installed here (as root with
# apt-get; otherwise the missing packages are named), so `make test` and
# `make run` work on a new machine as they do on CI.

SHELL := /bin/bash
PYTHON ?= python3
PY312 ?= $(shell scripts/find-python.sh 3.12)
PY313 ?= $(shell scripts/find-python.sh 3.13)
VENV ?= .venv
ARGS ?= --uidmap 0:1000:1 -- id
PYTEST_ARGS ?=
# Debian packages of the host phase (unit tests, `make integration`): from mk/tools.txt,
# which lists every program the runners call with its package. Add new packages there
# (tests/test_tools_list.py checks the list), not here.
APT_PACKAGES := $(shell scripts/deps.sh --list host)
STAMP := $(VENV)/.installed

.PHONY: help deps run-deps venv run unit unit311 unit312 unit313 integration test bench clean

help:
	@echo "make run ARGS='--uidmap 0:1000:1 -- id'  run this checkout with Debian's python3"
	@echo "make test         every phase in turn: unit, wheel-check, integration, vm-test"
	@echo "make deps         install the Debian packages of the host phase (run-deps, deb-deps,"
	@echo "                  vm-deps, vagrant-deps: those of theirs; all from mk/tools.txt)"
	@echo "make unit         tests/: pure core, CLI and API contract (3.11, 3.12, 3.13)"
	@echo "make integration  the integration suite on this host's kernel, root and rootless"
	@echo "make vm-test      the integration suite on Debian 6.1 / 6.12 / sid kernels under QEMU"
	@echo "make vagrant-box / vagrant-test   the offline Vagrant box and a run inside it"
	@echo "make bench        issue 23's figures, timed in pairs (BENCH=1a,3 BENCH_PAIRS=N BENCH_FORMAT=md)"
	@echo "make deb         dist/idrun_VERSION_all.deb (dpkg-buildpackage); make deb-check tests it"
	@echo "make dist / wheel-check   wheel and sdist; a fresh venv installs the wheel and launches"

# Installs (as root; otherwise names) the missing packages of $(APT_PACKAGES): build deps of
# python-prctl, the venv module, shadow's helpers, the Debian Python packages the
# unprivileged integration pass uses (root's pyenv interpreters are unreadable to other
# users), jsonschema for the --json schema checks, bash-completion, zsh and fish for the
# completion tests.
deps:
	@scripts/deps.sh host

$(STAMP): pyproject.toml | deps
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: deps $(STAMP)

# .venv312 from $(PY312), .venv313 from $(PY313) (pyenv's, see scripts/find-python.sh)
.venv3%/.installed: pyproject.toml | deps
	@if [ -z "$(PY3$*)" ]; then echo "no Python 3.$* found (set PY3$*=...)"; exit 1; fi
	$(PY3$*) -m venv .venv3$*
	.venv3$*/bin/pip install -q -e '.[test]'
	touch $@

# Only what idrun needs at run time, from Debian (no compiler, no test tools),
# running this checkout's code with Debian's python3.
RUN_PACKAGES := $(shell scripts/deps.sh --list run)
run-deps:
	@scripts/deps.sh run

run: run-deps
	PYTHONPATH=$(CURDIR)/src /usr/bin/python3 -m idrun $(ARGS)

unit311: venv
	$(VENV)/bin/python -m pytest -n 2 tests $(PYTEST_ARGS)

unit312: .venv312/.installed
	.venv312/bin/python -m pytest -n 2 tests $(PYTEST_ARGS)

unit313: .venv313/.installed
	.venv313/bin/python -m pytest -n 2 tests $(PYTEST_ARGS)

unit: unit311 unit312 unit313

# Debian's interpreter with Debian's click/prctl/pyroute2/pytest: the one both
# passes (root and the unprivileged user) can run, as in the guests.
integration: deps
	IDRUN_PYTHON=/usr/bin/python3 bash integration/guest/run-suite.sh $(PYTEST_ARGS)

-include mk/vm.mk
-include mk/vagrant.mk
-include mk/package.mk

# Each phase in turn, with its time (CI prints these; a cold run's are in the closing notes).
TEST_PHASES := unit wheel-check integration vm-test
test: deps deb-deps vm-deps
	@for p in $(TEST_PHASES); do \
	    t0=$$SECONDS; echo "::: make $$p"; \
	    if ! $(MAKE) --no-print-directory $$p; then \
	        echo "::: make $$p FAILED after $$((SECONDS - t0)) s"; exit 1; fi; \
	    echo "::: make $$p passed in $$((SECONDS - t0)) s"; \
	done

# The benchmark measures a regular (non-editable) install with compiled
# bytecode, as users get it from pip, not the editable development venv.
# BENCH=1a,3 runs some figures, BENCH_PAIRS=N sets the A/B pairs a figure (40),
# BENCH_FORMAT=md prints the README's table, BENCH_OUT=FILE writes it to FILE too.
# It exits 0 with FAILed figures too (named on its last line): speed is no test.
BENCH_VENV ?= build/bench-venv
BENCH ?=
BENCH_PAIRS ?= 40
BENCH_FORMAT ?= text
BENCH_OUT ?=
BENCH_ARGS ?=
bench: deps
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --force-reinstall --no-deps . && \
	    $(BENCH_VENV)/bin/pip install -q .
	$(BENCH_VENV)/bin/python bench/bench.py $(if $(BENCH),--only $(BENCH)) \
	    --pairs $(BENCH_PAIRS) --format $(BENCH_FORMAT) $(if $(BENCH_OUT),--output $(BENCH_OUT)) \
	    $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv312 .venv313 build src/*.egg-info .pytest_cache .hypothesis
