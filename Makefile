# hamq: the two commands of the README, and what CI runs.
#
#   make lab          venv, lab images and containers, site.yml, the failover drill
#   make test         everything CI runs (.ci/run calls exactly this)
#   make lab-destroy  remove the lab's containers, network and shared directory
#
# Every target works on a fresh clone: the venv comes from requirements.txt.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
# molecule needs ansible-config and friends on PATH.
export PATH := $(BIN):$(PATH)
export VIRTUAL_ENV := $(abspath $(VENV))
# With galaxy.yml present, molecule 26 wants scenarios in extensions/molecule;
# naming them explicitly keeps the top-level `molecule` link from triggering its
# "should migrate" warning.
export MOLECULE_GLOB := extensions/molecule/*/molecule.yml
export ANSIBLE_FORCE_COLOR ?= 0
export PY_COLORS ?= 0

LAB_INVENTORY ?= inventories/lab
COLLECTION_LINK := .ansible/collections/ansible_collections/hamq/cluster
TIMED := lab/timed.sh

.PHONY: help venv link images lab lab-up lab-site lab-drill lab-destroy \
        test ruff pytest ansible-checks molecule clean

help:
	@echo "make lab          build the Docker lab, deploy with site.yml, run the failover drill"
	@echo "make test         what CI runs: ruff, pytest, ansible checks, molecule test --all"
	@echo "make lab-destroy  remove the lab"
	@echo "make venv         create $(VENV) from requirements.txt"

# --- environment -----------------------------------------------------------

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "No python3.11 found. Fix: install python3.11 (Debian bookworm: apt-get install python3 python3-venv)"; exit 1; }
	@"$(PYTHON)" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
	  echo "warning: $(PYTHON) is not Python 3.11; requirements.txt pins versions tested on 3.11"
	test -x $(BIN)/python || "$(PYTHON)" -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

# The checkout itself is the hamq.cluster collection (ansible.cfg looks here).
link:
	@mkdir -p $(dir $(COLLECTION_LINK))
	@ln -sfn ../../../.. $(COLLECTION_LINK)

images:
	lab/build_images.sh

# --- the lab -----------------------------------------------------------------

lab: venv link
	@$(TIMED) "lab: images and containers" $(MAKE) --no-print-directory lab-up
	@$(TIMED) "lab: site.yml" $(MAKE) --no-print-directory lab-site
	@$(TIMED) "lab: failover drill" $(MAKE) --no-print-directory lab-drill
	@$(TIMED) --summary

lab-up: venv
	$(BIN)/ansible-playbook -i $(LAB_INVENTORY) playbooks/lab.yml

lab-site: venv link
	$(BIN)/ansible-playbook -i $(LAB_INVENTORY) site.yml

lab-drill: venv link
	$(BIN)/ansible-playbook -i $(LAB_INVENTORY) playbooks/failover_drill.yml

lab-destroy: venv
	$(BIN)/ansible-playbook -i $(LAB_INVENTORY) playbooks/lab_destroy.yml

# --- what CI runs ------------------------------------------------------------

test: venv link
	@$(TIMED) --reset
	@$(TIMED) "ruff" $(MAKE) --no-print-directory ruff
	@$(TIMED) "pytest (unit + integration)" $(MAKE) --no-print-directory pytest
	@$(TIMED) "ansible-lint, ansible-test sanity, collection build" $(MAKE) --no-print-directory ansible-checks
	@$(TIMED) "molecule test --all" $(MAKE) --no-print-directory molecule
	@$(TIMED) --summary

ruff: venv
	$(BIN)/ruff check .

# pytest exits 5 when it collects nothing: that fails here like any other error.
pytest: venv
	$(BIN)/pytest tests/unit tests/integration

ansible-checks: venv link
	bash tests/ansible_checks.sh

molecule: venv link
	$(BIN)/molecule test --all

clean:
	rm -rf .lab build dist tests/output .ansible
