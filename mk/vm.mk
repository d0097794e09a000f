# mk/vm.mk - run idrun's integration suite in QEMU guests with real Debian
# kernels (integration/vm/run.py).  Included by the top-level Makefile; also
# usable on its own:  make -f mk/vm.mk vm-test
#
# Targets:
#   vm-deps        install the host packages the runner needs (mk/tools.txt, phase vm;
#                  root: apt-get); the targets below depend on it and on `deb`
#   vm-test        build the .deb (make deb), build (or reuse) the guest images, and
#                  in every guest install the .deb and run the whole integration
#                  suite against the installed idrun, as root and as an
#                  unprivileged user (slow: ~10-13 min per pass under TCG)
#   vm-test-NAME   the same for one environment (vm-test-bookworm, ...)
#   vm-smoke       only $(VM_SMOKE_TESTS) in every guest (a few minutes;
#                  proves kernels, images, 9p, both users and the runner)
#   vm-clean-cache delete the image/apt cache ($(VM_CACHE))
#
# Variables (all VM_-prefixed so they cannot clash with the main Makefile):
#   VM_SUITES   environments to run, e.g. "bookworm trixie" (default: all in
#               integration/vm/kernels.txt)
#   VM_TIMEOUT  hard limit per guest boot for vm-test in seconds (default
#               3600: the whole suite takes ~25 min per guest under TCG)
#   VM_SMOKE_TIMEOUT  the same for vm-smoke (default 300)
#   VM_CACHE    image cache (default $$IDRUN_CACHE/idrun-vm, IDRUN_CACHE defaulting
#               to /var/cache)
#   VM_JOBS     guests running at the same time (default 3: under TCG a guest keeps about
#               one core busy, and the three full-suite guests then run side by side;
#               see integration/vm/README.md)
#   VM_ARGS     more run.py options; pytest arguments may follow "--":
#               VM_ARGS='-- -k maps'
#   VM_PYTEST_ARGS  pytest arguments of vm-test (default: -m 'kernel and not
#               permutation': the kernel-dependent tests without the redundant
#               parametrized cases; set it empty to run every test)
#   VM_PYTHON   interpreter for run.py (default python3, needs 3.11+)

# Keep the including Makefile's default goal: targets below must not become it.
VM_SAVED_DEFAULT_GOAL := $(.DEFAULT_GOAL)

VM_MK_DIR := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
VM_TOP := $(abspath $(VM_MK_DIR)/..)
VM_RUNNER := $(VM_TOP)/integration/vm/run.py
# `deb` and DEB_FILE: the package the guests install (run from the top of the tree)
include $(VM_MK_DIR)/package.mk

VM_PYTHON ?= python3
VM_SUITES ?=
VM_TIMEOUT ?= 3600
VM_SMOKE_TIMEOUT ?= 300
VM_SMOKE_TESTS ?= integration/test_smoke_kernel.py
VM_ARGS ?=
VM_JOBS ?= 3
VM_PYTEST_ARGS ?= -m 'kernel and not permutation'
VM_CACHE ?= $(or $(IDRUN_CACHE),/var/cache)/idrun-vm

.PHONY: vm-deps vm-test vm-smoke vm-clean-cache

vm-deps:
	@'$(VM_TOP)/scripts/deps.sh' vm

# run.py takes pytest arguments after a single "--"
VM_SEP = $(if $(filter --,$(VM_ARGS)),,--)

vm-test: vm-deps deb
	$(VM_PYTHON) '$(VM_RUNNER)' --deb '$(DEB_FILE)' --cache '$(VM_CACHE)' \
	    $(foreach s,$(VM_SUITES),--suite $(s)) --timeout $(VM_TIMEOUT) --jobs $(VM_JOBS) $(VM_ARGS) \
	    $(if $(strip $(VM_PYTEST_ARGS)),$(VM_SEP) $(VM_PYTEST_ARGS))

vm-test-%: vm-deps deb
	$(VM_PYTHON) '$(VM_RUNNER)' --deb '$(DEB_FILE)' --cache '$(VM_CACHE)' \
	    --suite $* --timeout $(VM_TIMEOUT) --jobs $(VM_JOBS) $(VM_ARGS) \
	    $(if $(strip $(VM_PYTEST_ARGS)),$(VM_SEP) $(VM_PYTEST_ARGS))

vm-smoke: vm-deps deb
	$(VM_PYTHON) '$(VM_RUNNER)' --deb '$(DEB_FILE)' --cache '$(VM_CACHE)' \
	    $(foreach s,$(VM_SUITES),--suite $(s)) --timeout $(VM_SMOKE_TIMEOUT) --jobs $(VM_JOBS) $(VM_ARGS) \
	    $(VM_SEP) $(VM_SMOKE_TESTS)

vm-clean-cache:
	@case '$(VM_CACHE)' in ''|/) echo "vm-clean-cache: refusing to delete '$(VM_CACHE)'" >&2; exit 1;; esac
	rm -rf --one-file-system -- '$(VM_CACHE)'

.DEFAULT_GOAL := $(VM_SAVED_DEFAULT_GOAL)
