# Two entry points for a fresh Debian 12 machine, as root:
#   make demo   deploy the FTPS server onto a local lab and show it working
#   make test   lint, unit tests, live server tests and the molecule scenarios on real lab hosts
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV      := .venv
BIN       := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
LAB       := tests/lab/lab
DEMO_HOSTS ?= ftps-1 ftps-2:trixie
SCENARIOS ?= $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))
# After lint, `make test` runs its suites TEST_JOBS at a time: they mostly wait on SSH and lab hosts, so two
# side by side take little longer than one. Longest first, so that the short ones fill the gaps at the end.
TEST_JOBS ?= 2
SLOWEST_SCENARIOS := ha certificates default multisite acme
# A suite still running after SUITE_TIMEOUT is stopped (with all it started) and fails, so that a hang
# shows up with its output instead of silencing the whole run. molecule/ha (five hosts, a verify that deploys
# the site four times) has a limit of its own: about 26 minutes alone, more beside another suite.
SUITE_TIMEOUT ?= 30m
SUITE_TIMEOUT_ha ?= 50m
within_limit = timeout --kill-after=60 $(or $(SUITE_TIMEOUT_$(1)),$(SUITE_TIMEOUT))
WITHIN_LIMIT := $(call within_limit)
SUITES := $(foreach s,$(SLOWEST_SCENARIOS),$(addprefix molecule-,$(filter $(s),$(SCENARIOS)))) reliability unit clients \
	$(addprefix molecule-,$(filter-out $(SLOWEST_SCENARIOS),$(SCENARIOS)))
# Debian packages the controller needs: the lab (debootstrap, iproute2, openssh), real FTPS clients for the
# live tests (curl, lftp; wget and rclone for the client suite), vsftpd for the benchmark reference,
# python3-venv for .venv, shellcheck for lint; FileZilla with an X server and xdotool to drive it headless;
# prometheus for promtool, which checks and unit-tests monitoring/ftpsd-alerts.yml (lint, unit).
DEB_PACKAGES := debootstrap iproute2 nftables openssh-client curl lftp vsftpd python3-venv git shellcheck wget rclone \
	filezilla xvfb xdotool prometheus
# Every shell script lint checks: the CI entry point, the lab tool's launcher and any *.sh in the repository.
SHELL_SCRIPTS = .ci/run tests/lab/lab $(shell git ls-files '*.sh')

.PHONY: help deps venv lab-up lab-down lab-status demo lint docs unit clients molecule reliability test clean

help:
	@echo "make demo        deploy the FTPS server onto a local lab of real hosts and show it working"
	@echo "make test        lint + unit + live server tests + molecule scenarios ($(SCENARIOS)) + reliability"
	@echo "make lab-up      boot the lab ($(DEMO_HOSTS)) and write inventories/lab/hosts.yml"
	@echo "make lab-down    stop every lab host and remove all it used"
	@echo "make docs        regenerate the role READMEs' variable tables from meta/argument_specs.yml"
	@echo "make lint | unit | clients | molecule | molecule-SCENARIO | reliability | lab-status | clean"

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi; \
	if grep -qx prometheus <<<"$$missing"; then \
	  echo "stopping and disabling the prometheus service the package just started (only promtool is needed)"; \
	  if [ -d /run/systemd/system ]; then systemctl disable --now prometheus.service; \
	  else service prometheus stop || true; update-rc.d prometheus disable; fi; \
	fi

# requirements.txt includes the runtime pins that the ftps_server role installs on the hosts too.
RUNTIME_PINS := roles/ftps_server/files/ftpsd-runtime.txt
$(VENV)/.installed: requirements.txt $(RUNTIME_PINS) ftpsd/pyproject.toml
	@[ -x $(BIN)/python ] || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q -e ./ftpsd
	@touch $@

venv: deps $(VENV)/.installed

# sslyze for the TLS scan of the reliability suite, in a venv of its own: its pins clash with Ansible's.
SSLYZE_VENV := .cache/sslyze-venv
$(SSLYZE_VENV)/.installed:
	@[ -x $(SSLYZE_VENV)/bin/python ] || python3 -m venv $(SSLYZE_VENV)
	$(SSLYZE_VENV)/bin/pip install -q --disable-pip-version-check sslyze==6.3.1
	@touch $@

lab-up: venv
	$(LAB) --lab lab up $(DEMO_HOSTS) --inventory inventories/lab/hosts.yml

lab-down:
	$(LAB) down --all

lab-status:
	$(LAB) status --all

demo: lab-up
	ansible-playbook site.yml
	ansible-playbook playbooks/verify.yml
	@echo; echo "The same checks over IPv6 (every lab host is dual-stack):"
	ansible-playbook playbooks/verify.yml -e 'verify_address={{ lab_ipv6_address }}'
	@echo; echo "How to connect (reports/deployment-report.md; also .html and a FileZilla export per site):"; echo
	@cat reports/deployment-report.md

lint: venv
	yamllint --strict .
	ansible-lint
	ruff check .
	ruff format --check .
	shellcheck $(SHELL_SCRIPTS)
	promtool check rules monitoring/ftpsd-alerts.yml

# The role READMEs' variable tables, from each role's meta/argument_specs.yml (tests/ansible fails on drift).
docs: venv
	python tools/role_docs.py

# Unit tests, live server tests on loopback, and the lab tool's own tests on this machine.
unit: venv
	$(WITHIN_LIMIT) pytest ftpsd/tests tests --ignore=tests/reliability --ignore=ftpsd/tests/test_clients.py --ignore=ftpsd/tests/test_client_filezilla.py

# Real clients (curl, lftp, wget, rclone: Debian 12 packages) through full round trips on loopback, and
# FileZilla importing our Site Manager export and connecting with it, driven on Xvfb.
clients: venv
	$(WITHIN_LIMIT) pytest ftpsd/tests/test_clients.py ftpsd/tests/test_client_filezilla.py

# Hostile input, faults, load and a TLS scan against a server that site.yml deploys on lab hosts.
reliability: venv $(SSLYZE_VENV)/.installed
	$(WITHIN_LIMIT) pytest tests/reliability

molecule: $(addprefix molecule-,$(SCENARIOS))

molecule-%: venv
	@start=$$SECONDS; $(call within_limit,$*) molecule test -s $* && echo "=== molecule test -s $* passed in $$((SECONDS - start)) s"

# Each suite's output is printed whole when it ends; the first failure stops the suites not yet started.
test: lint
	@echo "=== running $(strip $(SUITES)), $(TEST_JOBS) at a time"
	@start=$$SECONDS; $(MAKE) --no-print-directory -j$(TEST_JOBS) --output-sync=target $(SUITES) \
	  && echo "=== make test passed in $$((SECONDS - start)) s after lint"

clean: lab-down
	rm -rf $(VENV) .wheels reports
