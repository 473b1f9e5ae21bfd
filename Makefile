# hamq: the two commands of the README, and what CI runs.
#
#   make lab          prerequisites, venv, lab images and containers, site.yml, the failover drill
#   make test         everything CI runs (.ci/run calls exactly this)
#   make lab-destroy  remove the lab's containers, network and shared directory
#
# Every target works on a fresh clone: `lab` and `test` first install what the
# machine lacks (.ci/prerequisites.sh, the same step as .ci/run: Python 3.11,
# make, mmdebstrap, Docker and a running daemon), the venv comes from requirements.txt.

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
PREREQUISITES := .ci/prerequisites.sh

.PHONY: help prerequisites venv link images lab lab-up lab-site lab-drill lab-verify lab-destroy \
        test ruff pytest ansible-checks molecule clean

help:
	@echo "make lab          build the Docker lab, deploy with site.yml, run the failover drill"
	@echo "make test         what CI runs: ruff, pytest, ansible checks, molecule test --all"
	@echo "make lab-verify   check the running lab (one master, slaves, shared store, lock holder, drill report)"
	@echo "make lab-destroy  remove the lab"
	@echo "make venv         create $(VENV) from requirements.txt"
	@echo "make prerequisites  install what lab and test need (apt: python3, make, mmdebstrap, docker.io)"

# --- environment -----------------------------------------------------------

# .ci/run does this step itself (as its own timed part) and says so.
prerequisites:
	@if [ -n "$${HAMQ_PREREQUISITES_DONE:-}" ]; then echo "== prerequisites: done by .ci/run"; \
	else $(PREREQUISITES); fi

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml lab/venv/hamq_molecule_glob.pth
	@test -n "$(PYTHON)" || { echo "No python3.11 found. Fix: install python3.11 (Debian bookworm: apt-get install python3 python3-venv)"; exit 1; }
	@"$(PYTHON)" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || \
	  echo "warning: $(PYTHON) is not Python 3.11; requirements.txt pins versions tested on 3.11"
	test -x $(BIN)/python || "$(PYTHON)" -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@# A bare `molecule ...` from the repo root (venv activated) gets MOLECULE_GLOB too.
	$(BIN)/python -c 'import shutil, sysconfig; shutil.copy("lab/venv/hamq_molecule_glob.pth", sysconfig.get_paths()["purelib"])'
	@touch $@

# The checkout itself is the hamq.cluster collection: the committed link
# collections/ansible_collections/hamq/cluster -> ../../.. is on ansible.cfg's
# collections_path, so ansible-playbook needs nothing here.  The molecule
# scenarios set ANSIBLE_COLLECTIONS_PATH to .ansible/collections, which this makes.
link:
	@mkdir -p $(dir $(COLLECTION_LINK))
	@ln -sfn ../../../.. $(COLLECTION_LINK)

images:
	lab/build_images.sh

# --- the lab -----------------------------------------------------------------

lab:
	@$(TIMED) --reset
	@$(TIMED) "prerequisites (apt, docker)" $(MAKE) --no-print-directory prerequisites
	@$(MAKE) --no-print-directory venv
	@rc=0; \
	$(TIMED) "lab: images and containers" $(MAKE) --no-print-directory lab-up || rc=1; \
	[ $$rc = 1 ] || $(TIMED) "lab: site.yml" $(MAKE) --no-print-directory lab-site || rc=1; \
	[ $$rc = 1 ] || $(TIMED) "lab: failover drill" $(MAKE) --no-print-directory lab-drill || rc=1; \
	$(TIMED) --summary; exit $$rc

lab-up: venv
	$(BIN)/ansible-playbook -i $(LAB_INVENTORY) playbooks/lab.yml

lab-site: venv
	$(BIN)/ansible-playbook -i $(LAB_INVENTORY) site.yml

# The lab can hard-stop a whole host: docker kill the master's container.
lab-drill: venv
	$(BIN)/ansible-playbook -i $(LAB_INVENTORY) playbooks/failover_drill.yml \
	  -e drill_kill_method=host_stop \
	  -e 'drill_host_stop_command="docker kill {host}"' \
	  -e 'drill_host_start_command="docker start {host}"' \
	  -e drill_report_path=$(CURDIR)/drill-report.json
	@$(BIN)/python lab/drill_summary.py $(CURDIR)/drill-report.json

# The default molecule scenario's testinfra checks, run against the lab.
lab-verify: venv
	MOLECULE_INVENTORY_FILE=$(LAB_INVENTORY) MOLECULE_EPHEMERAL_DIRECTORY=$(CURDIR) \
	  $(BIN)/pytest -p no:cacheprovider extensions/molecule/default/tests

lab-destroy: venv
	$(BIN)/ansible-playbook -i $(LAB_INVENTORY) playbooks/lab_destroy.yml

# --- what CI runs ------------------------------------------------------------

# Every part runs even when an earlier one fails, so one run shows all failures
# and all timings; the exit code is non-zero if any part failed.  The VM lab
# (real NFSv4 and GFS2 kernels under qemu, about 11 minutes on a quiet 2-core
# host) is part of it; `make test VM_LAB=0` leaves it out for a quick local run.
VM_LAB ?= 1
test:
	@$(TIMED) --reset
	@$(TIMED) "prerequisites (apt, docker)" $(MAKE) --no-print-directory prerequisites
	@$(MAKE) --no-print-directory venv link
	@rc=0; \
	$(TIMED) "ruff" $(MAKE) --no-print-directory ruff || rc=1; \
	$(TIMED) "pytest (unit + integration)" $(MAKE) --no-print-directory pytest || rc=1; \
	$(TIMED) "ansible-lint, ansible-test sanity, collection build" $(MAKE) --no-print-directory ansible-checks || rc=1; \
	$(TIMED) "molecule test --all" $(MAKE) --no-print-directory molecule || rc=1; \
	if [ "$(VM_LAB)" = 1 ]; then \
	$(TIMED) "vm lab: prerequisites and image" $(MAKE) --no-print-directory vm-image || rc=1; \
	$(TIMED) "vm lab: molecule test nfs4/vm" lab/vm/run.sh nfs4 || rc=1; \
	$(TIMED) "vm lab: molecule test gfs2/vm" lab/vm/run.sh gfs2 || rc=1; \
	else echo "== vm lab skipped (VM_LAB=$(VM_LAB))"; fi; \
	$(TIMED) --summary; exit $$rc

ruff: venv
	$(BIN)/ruff check .

# pytest exits 5 when it collects nothing: that fails here like any other error.
pytest: venv
	$(BIN)/pytest tests/unit tests/integration tests/faults benchmarks/tests

ansible-checks: venv
	@test -f tests/ansible_checks.sh || { echo "tests/ansible_checks.sh is missing (the collection's lint + sanity + build script)"; exit 1; }
	bash tests/ansible_checks.sh

molecule: venv link
	$(BIN)/molecule test --all

clean:
	rm -rf .lab build dist tests/output .ansible

# --- the VM lab: NFSv4 and GFS2 on a real kernel (qemu TCG) --------------------
# `make test` runs them after the Docker scenarios; these targets run them
# alone (see docs/vm-lab.md for measured times).  They live at
# extensions/molecule/<name>/vm/, which MOLECULE_GLOB above does not match, so
# `molecule test --all` never starts a VM.  Needs root (netns, taps, qemu).
.PHONY: vm-image vm-test vm-test-nfs4 vm-test-gfs2 vm-destroy

vm-image:
	lab/vm/prerequisites.sh
	lab/vm/build_image.sh

vm-test: venv link
	@$(TIMED) --reset
	@$(TIMED) "vm: prerequisites and image" $(MAKE) --no-print-directory vm-image
	@$(TIMED) "vm: molecule test nfs4/vm" lab/vm/run.sh nfs4
	@$(TIMED) "vm: molecule test gfs2/vm" lab/vm/run.sh gfs2
	@$(TIMED) --summary

vm-test-nfs4: venv link vm-image
	lab/vm/run.sh nfs4

vm-test-gfs2: venv link vm-image
	lab/vm/run.sh gfs2

vm-destroy:
	lab/vm/netns.sh down
