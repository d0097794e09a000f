# mk/package.mk - idrun as users install it: the Debian package, the wheel and
# sdist, and a check of each.  Included by the top-level Makefile.
#
# Targets:
#   deb-deps     install what `make deb` needs (root; apt-get, as `make deps`)
#   deb          dist/idrun_VERSION_all.deb via dpkg-buildpackage (dh + pybuild),
#                then lintian on it
#   dist         dist/idrun-VERSION-py3-none-any.whl and the sdist (python -m build)
#   wheel-check  a fresh venv installs the wheel; runs `idrun -V` and, as root,
#                one real launch
#   deb-check    the package tests of tests/test_package.py (build, extract, inspect)
#
# mk/vm.mk and mk/vagrant.mk include this file too (their tests install the .deb),
# so it guards against a second inclusion.

ifndef PACKAGE_MK_INCLUDED
PACKAGE_MK_INCLUDED := 1
PKG_SAVED_DEFAULT_GOAL := $(.DEFAULT_GOAL)

# Build tools of the .deb (pure Python, arch all: no compiler among them), the
# runtime packages it depends on (its tests run the built command), and
# python3-build for the wheel and sdist: the "package" phase of mk/tools.txt.
DEB_BUILD_PACKAGES := $(shell scripts/deps.sh --list package)
WHEEL_VENV ?= build/wheel-venv
# Debian's interpreter and tools, whatever else (pyenv, a venv) is first in PATH.
DEB_PATH := /usr/sbin:/usr/bin:/sbin:/bin
DIST_PYTHON ?= /usr/bin/python3

.PHONY: deb-deps deb dist wheel-check deb-check

deb-deps:
	@scripts/deps.sh package

# dpkg-buildpackage writes its results next to the source tree; build from a
# copy in $(DEB_BUILD) so they land there and the tree stays clean. The tests
# set DEB_BUILD and DEB_OUT to their own directories.
DEB_BUILD ?= build/deb
DEB_OUT ?= dist
# What `make deb` makes: the VM guests and the Vagrant box install and test this file.
DEB_VERSION := $(shell sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' debian/changelog)
DEB_FILE = $(DEB_OUT)/idrun_$(DEB_VERSION)_all.deb
deb: deb-deps
	rm -rf $(DEB_BUILD) && mkdir -p $(DEB_BUILD)/idrun $(DEB_OUT)
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	    git ls-files -z --cached --others --exclude-standard | \
	        xargs -0 cp --parents -t $(DEB_BUILD)/idrun; \
	else \
	    tar -c --exclude=./build --exclude=./dist --exclude='./.venv*' --exclude=.git . | \
	        tar -x -C $(DEB_BUILD)/idrun; \
	fi
	cd $(DEB_BUILD)/idrun && PATH=$(DEB_PATH) dpkg-buildpackage -us -uc -b
	cp $(DEB_BUILD)/idrun_*_all.deb $(DEB_OUT)/
	PATH=$(DEB_PATH) lintian --fail-on error --suppress-tags $(DEB_LINTIAN_IGNORE) \
	    $(DEB_BUILD)/idrun_*.changes

# A native package built locally for local use: no upload, no signed source.
DEB_LINTIAN_IGNORE := initial-upload-closes-no-bugs

dist: deb-deps
	rm -f dist/idrun-*.whl dist/idrun-*.tar.gz
	$(DIST_PYTHON) -m build --no-isolation --outdir dist .

wheel-check: dist
	rm -rf $(WHEEL_VENV)
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/pip install -q dist/idrun-*-py3-none-any.whl
	cd / && $(abspath $(WHEEL_VENV))/bin/idrun -V
	@if [ "$$(id -u)" = 0 ]; then \
	    echo "+ idrun --uidmap 0:0:1 -- true"; \
	    cd / && $(abspath $(WHEEL_VENV))/bin/idrun --uidmap 0:0:1 -- true; \
	else echo "not root: skipping the launch"; fi

deb-check: deb-deps venv
	$(VENV)/bin/python -m pytest -q tests/test_package.py $(PYTEST_ARGS)

.DEFAULT_GOAL := $(PKG_SAVED_DEFAULT_GOAL)
endif
