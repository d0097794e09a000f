# Vagrant targets for idrun.  Included by the top-level Makefile; also works on
# its own:  make -f mk/vagrant.mk vagrant-test
#
#   vagrant-box   build (or reuse from the cache) the offline box idrun/debian12-local
#   vagrant-test  run the integration suite in that box with vagrant-libvirt (TCG),
#                 sandboxed in a private network namespace; cleans up after itself
#
# Variables (all prefixed VAGRANT_, none of them is read by vagrant itself):
#   VAGRANT_BOX_CACHE     cache for the box and its SSH key  (default /var/cache/idrun-vagrant)
#   VAGRANT_TEST_TIMEOUT  hard limit for vagrant-test in seconds (default 1200)
#   VAGRANT_TEST_SUITE    host script to run instead of integration/guest/run-suite.sh

VAGRANT_MK_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)
VAGRANT_BOX_CACHE ?= /var/cache/idrun-vagrant
VAGRANT_TEST_TIMEOUT ?= 1200
VAGRANT_TEST_SUITE ?=

VAGRANT_MK_ENV = IDRUN_VAGRANT_CACHE='$(VAGRANT_BOX_CACHE)' \
	IDRUN_VAGRANT_TIMEOUT='$(VAGRANT_TEST_TIMEOUT)' \
	$(if $(VAGRANT_TEST_SUITE),IDRUN_VAGRANT_SUITE='$(VAGRANT_TEST_SUITE)')

.PHONY: vagrant-box vagrant-test

vagrant-box:
	$(VAGRANT_MK_ENV) '$(VAGRANT_MK_ROOT)/vagrant/local-box/build-box.sh'

vagrant-test:
	$(VAGRANT_MK_ENV) '$(VAGRANT_MK_ROOT)/vagrant/run-vagrant-test.sh'
