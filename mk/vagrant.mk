# Vagrant targets for idrun.  Included by the top-level Makefile; also works on
# its own:  make -f mk/vagrant.mk vagrant-test
#
#   vagrant-deps   install the host packages (mk/tools.txt, phase vagrant; root: apt-get)
#   vagrant-box    build (or reuse from the cache) the offline box idrun/debian12-local
#   vagrant-test   build the .deb (make deb), install it in that box and run the
#                  integration suite against it with vagrant-libvirt (TCG),
#                  sandboxed in a private network namespace; cleans up after itself
#   vagrant-smoke  the same with only $(VAGRANT_SMOKE_TESTS) (a few minutes)
#
# Variables (all prefixed VAGRANT_, none of them is read by vagrant itself):
#   VAGRANT_TEST_TIMEOUT  hard limit for vagrant-test in seconds (default 3600;
#                         the whole suite takes 10+ min per pass under TCG)
#   VAGRANT_PYTEST_ARGS   arguments for integration/guest/run-suite.sh, i.e. pytest
#                         arguments (default: -m 'kernel and not permutation', which drops the
#                         redundant parametrized cases; set it empty to run them all)
#   VAGRANT_SMOKE_TESTS   test paths of vagrant-smoke (default integration/test_smoke_kernel.py)
#   VAGRANT_SMOKE_TIMEOUT hard limit for vagrant-smoke (default 1200)
#   VAGRANT_TEST_SUITE    host script to run instead of integration/guest/run-suite.sh

# Keep the including Makefile's default goal.
VAGRANT_SAVED_DEFAULT_GOAL := $(.DEFAULT_GOAL)

VAGRANT_MK_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)
# `deb` and DEB_FILE: the package the box installs (run from the top of the tree)
include $(VAGRANT_MK_ROOT)/mk/package.mk
VAGRANT_TEST_TIMEOUT ?= 3600
VAGRANT_PYTEST_ARGS ?= -m 'kernel and not permutation'
VAGRANT_SMOKE_TESTS ?= integration/test_smoke_kernel.py
VAGRANT_SMOKE_TIMEOUT ?= 1200
VAGRANT_TEST_SUITE ?=

# The box and its SSH key live in $$IDRUN_CACHE/idrun-vagrant (IDRUN_CACHE: /var/cache).
VAGRANT_MK_ENV = IDRUN_DEB='$(abspath $(DEB_FILE))' \
	$(if $(VAGRANT_TEST_SUITE),IDRUN_VAGRANT_SUITE='$(VAGRANT_TEST_SUITE)')

.PHONY: vagrant-deps vagrant-box vagrant-test vagrant-smoke

vagrant-deps:
	@'$(VAGRANT_MK_ROOT)/scripts/deps.sh' vagrant

vagrant-box: vagrant-deps
	$(VAGRANT_MK_ENV) '$(VAGRANT_MK_ROOT)/vagrant/local-box/build-box.sh'

vagrant-test: vagrant-deps deb
	$(VAGRANT_MK_ENV) IDRUN_VAGRANT_TIMEOUT='$(VAGRANT_TEST_TIMEOUT)' \
	    IDRUN_VAGRANT_PYTEST_ARGS="$(VAGRANT_PYTEST_ARGS)" \
	    '$(VAGRANT_MK_ROOT)/vagrant/run-vagrant-test.sh'

vagrant-smoke: vagrant-deps deb
	$(VAGRANT_MK_ENV) IDRUN_VAGRANT_TIMEOUT='$(VAGRANT_SMOKE_TIMEOUT)' \
	    IDRUN_VAGRANT_PYTEST_ARGS="$(VAGRANT_SMOKE_TESTS)" \
	    '$(VAGRANT_MK_ROOT)/vagrant/run-vagrant-test.sh'

.DEFAULT_GOAL := $(VAGRANT_SAVED_DEFAULT_GOAL)
