# Thin entry points. The work is done by the venv's tools, tools/edgelab and Molecule.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements.sha256
REQUIREMENTS := requirements-dev.txt
# everything requirements-dev.txt pulls in: a change to any of them re-runs pip
REQUIREMENT_INPUTS := $(REQUIREMENTS) tests/standins/ollama/requirements.txt \
  tests/standins/ollama/requirements-test.txt tests/standins/grafana/requirements.txt \
  tests/standins/grafana/requirements-test.txt onnx_service/pyproject.toml \
  exporters/ollama_exporter/pyproject.toml tools/pytest_noskip/pyproject.toml
LAB := PYTHONPATH=tools $(PY) -m edgelab
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# Ansible's (and ansible-lint's) own state per checkout, so that checkouts side by side do not
# share ~/.ansible (ansible-lint installs the collection it lints there)
export ANSIBLE_HOME := $(CURDIR)/.ansible
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/collections
export MOLECULE_GLOB := molecule/*/molecule.yml
# Molecule's edge host publishes its gateway here (the lab's uses 30080), for tests as a client
export EDGEAI_PUBLISHED_PORTS ?= ["127.0.0.1:30081:30080"]
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# a test that would skip for a missing prerequisite fails instead: make installs them all
export EDGEAI_NO_SKIP := 1

.PHONY: help setup packages lint sanity docs unit unit-python unit-packages images integration \
  molecule molecule-cluster test lab lab-down lab-cluster lab-cluster-down clean arm64 release-images

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

setup: ## the pinned dev environment in .venv (fast when nothing changed)
	@want=$$(cat $(REQUIREMENT_INPUTS) | sha256sum | cut -d' ' -f1); \
	if [ ! -x $(PY) ] || [ "$$(cat $(STAMP) 2>/dev/null)" != "$$want" ]; then \
	  echo "setup: installing $(REQUIREMENTS) into $(VENV)"; \
	  python3 -m venv $(VENV); \
	  $(PY) -m pip install -q --upgrade pip; \
	  $(PY) -m pip install -q -r $(REQUIREMENTS); \
	  echo "$$want" > $(STAMP); \
	fi

packages: setup ## Debian packages the tests drive for real (nginx + njs, testssl.sh, debootstrap, promtool, amtool, mtail)
	$(LAB) packages

lint: setup ## yamllint, ansible-lint (production profile), ruff, ansible-test sanity, playbook syntax
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --offline
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(PY) tools/ansible_sanity.py
	@# as a fresh checkout runs them: the collection resolves through its committed link
	@for p in playbooks/*.yml; do env -u ANSIBLE_COLLECTIONS_PATH $(BIN)/ansible-playbook --syntax-check -i inventories/example $$p >/dev/null || exit 1; done; echo "syntax-check: playbooks/*.yml ok"

sanity: setup ## ansible-test sanity (validate-modules, pylint, pep8, import, ...) on the collection as it ships
	$(PY) tools/ansible_sanity.py

docs: setup ## regenerate the generated files: role README variable tables, Grafana dashboards
	$(PY) tools/role_docs.py
	cd tools/dashboards && ../../$(PY) -m edgeai_dashboards

unit: unit-python unit-packages ## tests without Docker

unit-python: setup ## pure-Python tests: the collection, harness, stand-ins, onnx_service (no root, no apt)
	$(BIN)/pytest -q -n auto tests/unit tests/standins/ollama/tests tests/standins/grafana/tests tests/gateway -m "not docker and not packages"
	# the container test needs the built image: `make integration` runs it
	cd onnx_service && ../$(BIN)/pytest -q --ignore=tests/test_container.py
	cd exporters/ollama_exporter && ../../$(BIN)/pytest -q

unit-packages: packages ## tests that run Debian's nginx, testssl.sh, promtool, amtool, mtail, blackbox exporter
	$(BIN)/pytest -q -n auto tests/unit tests/gateway -m "packages and not docker"

images: setup ## Docker engine, lab image set and lab registry (cached by content hash)
	$(LAB) images

integration: images packages ## roles and playbooks against this machine's Docker engine with lab images
	source <($(LAB) env) && $(BIN)/pytest -q tests/gateway -m docker
	source <($(LAB) env) && $(BIN)/pytest -q tests/exporters -m docker
	source <($(LAB) env) && $(BIN)/pytest -q tests/unit -m docker
	source <($(LAB) env) && $(BIN)/pytest -q tests/model_sync
	source <($(LAB) env) && cd onnx_service && ONNX_SERVICE_IMAGE=$$MSYNC_ONNX_IMAGE ../$(BIN)/pytest -q tests/test_container.py
	source <($(LAB) env) && OLLAMA_STANDIN_IMAGE=$$MSYNC_OLLAMA_IMAGE $(BIN)/pytest -q tests/standins/ollama/integration

molecule: images ## molecule test: the appliance on an emulated edge host
	source <($(LAB) env) && $(BIN)/molecule test -s default

# The site of three hosts (molecule/cluster). Names and addresses: EDGEAI_CLUSTER_PREFIX (host
# names <prefix>-a|b|c), EDGEAI_CLUSTER_NETWORK, EDGEAI_CLUSTER_NET (first three octets of its /24).
CLUSTER_ENV := EDGEAI_CLUSTER_PREFIX=$${EDGEAI_CLUSTER_PREFIX:-edgeai-cluster} \
  EDGEAI_CLUSTER_NETWORK=$${EDGEAI_CLUSTER_NETWORK:-edgeai-cluster-net} \
  EDGEAI_CLUSTER_NET=$${EDGEAI_CLUSTER_NET:-172.28.0}

molecule-cluster: images ## molecule test -s cluster: a site of three hosts (HA gateway, monitoring pair)
	source <($(LAB) env) && $(CLUSTER_ENV) $(BIN)/molecule test -s cluster

# Every test in three lanes side by side (edgelab lanes tags each line with its lane and runs each
# to its end): a converge keeps both cores busy while a verify step mostly waits on the appliance,
# so the lanes fill each other's waits (docs/benchmarks.md, "make test in three lanes"). Run one
# target alone (make lint, make molecule, ...) to see its output in one piece.
test: packages images ## every test: lint, unit and integration beside the two Molecule scenarios
	$(LAB) lanes "checks=$(MAKE) --no-print-directory lint unit integration" \
	  "molecule=$(MAKE) --no-print-directory molecule" \
	  "cluster=$(MAKE) --no-print-directory molecule-cluster"

arm64: images ## the project's images built for arm64 and serving a real model under qemu
	$(LAB) images --only onnx-service-arm64
	source <($(LAB) env) && $(BIN)/pytest -q tests/arm64

# REGISTRY=host:port pushes (as docker_image_mirror names it); PLATFORMS=linux/amd64,linux/arm64
release-images: setup ## build the project's own images at the collection's version (see README)
	$(PY) tools/release_images.py --platform $(or $(PLATFORMS),linux/amd64) \
	  $(if $(REGISTRY),--registry $(REGISTRY)) $(if $(BASE_IMAGE),--base-image $(BASE_IMAGE))

LAB_ENV := EDGEAI_INSTANCE=edgeai-lab-edge EDGEAI_PUBLISHED_PORTS='["127.0.0.1:30080:30080"]'

lab: images ## deploy the appliance to the local emulated edge host
	source <($(LAB) env) && $(LAB_ENV) $(BIN)/molecule converge -s lab
	@$(LAB_ENV) $(PY) tools/lab_summary.py

lab-down: setup ## remove the lab edge host and registry
	source <($(LAB) env) && $(LAB_ENV) $(BIN)/molecule destroy -s lab
	$(LAB) down

# `make lab-cluster`: the same site, kept running, on names and a network of its own.
LAB_CLUSTER_ENV := EDGEAI_CLUSTER_PREFIX=$${EDGEAI_LAB_CLUSTER_PREFIX:-edgeai-cluster-lab} \
  EDGEAI_CLUSTER_NETWORK=$${EDGEAI_LAB_CLUSTER_NETWORK:-edgeai-cluster-lab-net} \
  EDGEAI_CLUSTER_NET=$${EDGEAI_LAB_CLUSTER_NET:-172.28.1}

lab-cluster: images ## three emulated edge hosts as one site; writes .lab/cluster.json
	source <($(LAB) env) && $(LAB_CLUSTER_ENV) $(BIN)/molecule converge -s lab-cluster
	@$(LAB_CLUSTER_ENV) $(PY) tools/lab_cluster.py

lab-cluster-down: setup ## remove the site of `make lab-cluster` and .lab/cluster.json
	source <($(LAB) env) && $(LAB_CLUSTER_ENV) $(BIN)/molecule destroy -s lab-cluster
	rm -f .lab/cluster.json

clean: lab-down lab-cluster-down ## remove the venv and caches too
	rm -rf $(VENV) .cache .lab
	find collections/ansible_collections -mindepth 1 -maxdepth 1 ! -name edgeai -exec rm -rf {} +
