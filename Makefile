# idrun — developer entry points. `make help` lists them.
#
# Everything a fresh Debian machine lacks is installed here (as root with
# apt-get; otherwise the missing packages are named), so `make test` and
# `make run` work on a new machine as they do on CI.

SHELL := /bin/bash
PYTHON ?= python3
PY312 ?= $(shell scripts/find-python.sh 3.12)
VENV ?= .venv
VENV312 ?= .venv312
ARGS ?= --uidmap 0:1000:1 -- id
PYTEST_ARGS ?=
APT_PACKAGES := gcc libcap-dev python3-dev python3-venv uidmap util-linux procps iproute2 \
                python3-pytest python3-click python3-prctl python3-pyroute2 \
                python3-jsonschema bash-completion zsh fish busybox-static
STAMP := $(VENV)/.installed

.PHONY: help deps run-deps venv run unit unit311 unit312 integration test bench clean

help:
	@echo "make run ARGS='--uidmap 0:1000:1 -- id'  run this checkout with Debian's python3"
	@echo "make test         unit tests (3.11 + 3.12), host integration (root + rootless), VM kernels"
	@echo "make unit         unit and real-kernel tests under tests/"
	@echo "make integration  the integration suite on this host's kernel, root and rootless"
	@echo "make vm-test      the integration suite on Debian 6.1 / 6.12 / sid kernels under QEMU"
	@echo "make vagrant-box / vagrant-test   the offline Vagrant box and a run inside it"
	@echo "make bench        launch and resolution benchmarks"
	@echo "make deb         dist/idrun_VERSION_all.deb (dpkg-buildpackage); make deb-check tests it"
	@echo "make dist / wheel-check   wheel and sdist; a fresh venv installs the wheel and launches"

# Debian packages: build deps of python-prctl, the venv module, shadow's helpers,
# the Debian Python packages the unprivileged integration pass uses (root's
# pyenv interpreters are unreadable to other users), jsonschema for the --json
# schema checks, bash-completion, zsh and fish for the completion tests.
deps:
	scripts/apt-need.sh $(APT_PACKAGES)

$(STAMP): pyproject.toml | deps
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: deps $(STAMP)

$(VENV312)/.installed: pyproject.toml | deps
	@if [ -z "$(PY312)" ]; then echo "no Python 3.12 found (set PY312=...)"; exit 1; fi
	$(PY312) -m venv $(VENV312)
	$(VENV312)/bin/pip install -q -e '.[test]'
	touch $@

# Only what idrun needs at run time, from Debian (no compiler, no test tools),
# running this checkout's code with Debian's python3.
RUN_PACKAGES := uidmap python3-click python3-prctl python3-pyroute2
run-deps:
	scripts/apt-need.sh $(RUN_PACKAGES)

run: run-deps
	PYTHONPATH=$(CURDIR)/src /usr/bin/python3 -m idrun $(ARGS)

unit311: venv
	$(VENV)/bin/python -m pytest -n 2 tests $(PYTEST_ARGS)

unit312: $(VENV312)/.installed
	$(VENV312)/bin/python -m pytest -n 2 tests $(PYTEST_ARGS)

unit: unit311 unit312

# Debian's interpreter with Debian's click/prctl/pyroute2/pytest: the one both
# passes (root and the unprivileged user) can run, as in the guests.
integration: deps
	IDRUN_PYTHON=/usr/bin/python3 bash integration/guest/run-suite.sh $(PYTEST_ARGS)

-include mk/vm.mk
-include mk/vagrant.mk
-include mk/package.mk

test: unit wheel-check integration vm-test

# The benchmark measures a regular (non-editable) install with compiled
# bytecode, as users get it from pip, not the editable development venv.
BENCH_VENV ?= build/bench-venv
bench: deps
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --force-reinstall --no-deps . && \
	    $(BENCH_VENV)/bin/pip install -q .
	$(BENCH_VENV)/bin/python bench/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(VENV312) build src/*.egg-info .pytest_cache .hypothesis
