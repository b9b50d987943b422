# The same commands locally and in CI (.ci/run runs `make test`).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CLUSTER ?= default
NODES ?= 3
IMAGE ?= kubetee/kubetee:0.1.0
# local: a Python base made from Debian packages (no image registry needed); or e.g.
# IMAGE_BASE=python:3.11-slim where Docker Hub is reachable.
IMAGE_BASE ?= local

.PHONY: help venv binaries lint test test-unit test-e2e demo cluster-up cluster-down clean \
	docker-engine kind-build kind-up kind-down test-kind image demo-kind \
	example-enclave

help:
	@echo "make demo   - bring up the local cluster and run the KubeTEE demo"
	@echo "make test   - install, build or reuse the cluster binaries, lint, run all tests"
	@echo "make image  - build the KubeTEE image with Docker (IMAGE, IMAGE_BASE)"
	@echo "make demo-kind - the whole story on a kind cluster, every component a pod"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Builds kube-apiserver, scheduler, controller-manager, kubectl, etcd, kwok and helm from
# the Go module proxy once per machine (cached under ~/.cache/kubetee); instant afterwards.
binaries: venv
	$(BIN)/kubetee cluster build

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test-unit: venv
	$(BIN)/pytest -m "not e2e"

test-e2e: venv binaries
	$(BIN)/pytest -m "e2e and not kind"

# Everything: lint, unit, e2e on the local cluster, and the kind suite (real containers;
# kind-up sets up the Docker engine as root and builds the kind cluster once per machine).
test: venv binaries lint kind-up
	$(BIN)/pytest

# Re-sign the example enclave after changing deploy/examples/enclave-app (sample key: the
# simulator's), regenerate its ConfigMap, and print the pins for enclavecontainer.yaml.
EXAMPLE_ENCLAVE := deploy/examples/enclave-app
example-enclave: venv
	$(BIN)/kubetee enclave build --dir $(EXAMPLE_ENCLAVE) --sample-key
	{ sed -n '1,3p' deploy/examples/enclave-bundle.yaml; \
	  $(BIN)/kubetee enclave bundle --dir $(EXAMPLE_ENCLAVE) --name demo-enclave; } \
	  > deploy/examples/enclave-bundle.yaml.new
	mv deploy/examples/enclave-bundle.yaml.new deploy/examples/enclave-bundle.yaml

demo: venv binaries
	$(BIN)/kubetee demo --cluster $(CLUSTER) --nodes $(NODES)

cluster-up: venv binaries
	$(BIN)/kubetee cluster --name $(CLUSTER) up --nodes $(NODES)

cluster-down: venv
	$(BIN)/kubetee cluster --name $(CLUSTER) down

# The container image, with this machine's pip settings; the base is made once per machine
# (debootstrap, about five minutes) and cached by version.
image: venv
	$(BIN)/kubetee image build --tag $(IMAGE) --base $(IMAGE_BASE)

# A kind cluster (real kubelets and containers) built offline: docs/kind-cluster.md.
# The Docker engine setup installs Debian packages and starts dockerd: it needs root.
docker-engine:
	sh deploy/kind/setup-docker-engine.sh

# CI never asks an image registry for the official kind node image: it builds its own.
KIND_FLAGS ?= $(if $(CI),--offline,)

kind-build: venv binaries docker-engine
	$(BIN)/kubetee kind build $(KIND_FLAGS)

kind-up: venv binaries docker-engine
	$(BIN)/kubetee kind up $(KIND_FLAGS)

kind-down: venv
	$(BIN)/kubetee kind down

test-kind: kind-up
	$(BIN)/pytest -m kind

# The whole story on kind: image built and loaded, chart installed, every component a pod.
demo-kind: kind-up
	$(BIN)/kubetee demo --kind --image $(IMAGE)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
