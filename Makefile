# Surge: `make help` lists the targets. `make test` is everything CI checks.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo
PORT ?= 8000
# Closed-loop runs sharing the machine in `make test`: one at a time (three at once overran the three burst runs'
# syncs by up to 2.7 s in a clean-clone run on 2026-12-07; CLOSED_LOOP_AT_ONCE=3 halves the loop's time on a quiet machine).
CLOSED_LOOP_AT_ONCE ?= 1
# Image tag: the workspace version, which the manifests pin (tests/deploy checks they agree).
IMAGE_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
export IMAGE_TAG

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_%-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: ## Build and start the consumer on port $(PORT)
	$(CARGO) run --release --bin consumer -- --port $(PORT)

.PHONY: demo
demo: tools build ## No cluster: the closed loop for PROFILE=heavy, compressed as its test runs it (TIME_SCALE=1: real time)
	PROFILE=$(or $(PROFILE),heavy) scripts/demo.sh

.PHONY: build
build: ## Build the consumer, the generator and `surge` (release)
	$(CARGO) build --release --workspace

.PHONY: tools
tools: ## Install what `make test` drives (Prometheus, HAProxy, wrk, linters, the KEDA schema), skipping what is present
	@bash scripts/install-tools.sh

.PHONY: test
test: tools lint lint-deploy ## Everything CI checks: lints, every test of the workspace (manifests and the closed loop included; what tests print is shown), then fuzz-api
	$(CARGO) test --workspace --all-targets --no-run
	# Three lanes at once (the closed loop first in line for the cores, the rest at nice 19), then isolated alone; the
	# closed loop's runs take turns (CLOSED_LOOP_AT_ONCE, one by default) and each fails if a sync began over 1 s of
	# the HPA's time late or overran.
	CLOSED_LOOP_AT_ONCE=$(CLOSED_LOOP_AT_ONCE) scripts/test-lanes.sh

.PHONY: check
check: lint ## The fast inner loop: lint, every unit test, the manifest policy and the make-dev fakes (no release build, Prometheus or HAProxy)
	$(CARGO) test --workspace --lib --bins
	$(CARGO) test --test deploy -- policy:: manifests:: devscript::

.PHONY: chaos
chaos: ## The shared backlog's fault campaign: SEED (1), DURATION of faults in seconds (600), REPLICAS (3); make test runs 150 s of seed 1
	CHAOS_SEED=$(or $(SEED),1) CHAOS_SECONDS=$(or $(DURATION),600) CHAOS_REPLICAS=$(or $(REPLICAS),3) \
		$(CARGO) test --test chaos -- --nocapture

.PHONY: fuzz-api
fuzz-api: ## schemathesis (every check) against the real consumer's OpenAPI spec; FUZZ_EXAMPLES, SCHEMATHESIS_SEED
	scripts/fuzz-api.sh

.PHONY: lint
lint: ## cargo fmt --check, clippy with warnings as errors, no import circles in any crate
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	python3 scripts/import-cycles.py --self-test
	python3 scripts/import-cycles.py src capacity/src keda/src generator/src harness/src sim/src tune/src

.PHONY: lint-deploy
lint-deploy: ## yamllint, hadolint and shellcheck over manifests, dashboards' kustomization, Dockerfiles, scripts
	yamllint --strict kubernetes-manifests grafana .yamllint .github
	hadolint Dockerfile generator/Dockerfile
	shellcheck scripts/*.sh .ci/run

.PHONY: images
images: ## Build the consumer and generator images (docker with BuildKit: the Dockerfiles use RUN --mount)
	@docker buildx version >/dev/null 2>&1 || { echo "error: the Dockerfiles use RUN --mount, which needs BuildKit:" \
	  "install Docker's buildx plugin (Debian/Ubuntu: docker-buildx-plugin or docker-buildx), then run this again" >&2; exit 1; }
	docker build -f Dockerfile -t surge-consumer:$(IMAGE_TAG) .
	docker build -f generator/Dockerfile -t surge-generator:$(IMAGE_TAG) .

.PHONY: dev
dev: ## Local cluster (kind/minikube): build and load images, install KEDA and metrics-server, deploy (the shared backlog: Redis), wait; SURGE_QUEUE=memory keeps each pod's own backlog
	@scripts/dev.sh dev

.PHONY: load-%
load-%: ## Run a load Job (load-heavy, load-memory-stress, load-distributed, ...) and follow its log
	@scripts/dev.sh load $*

.PHONY: status
status: ## ScaledObject, HPA, deployments, pods and Jobs in the surge namespace
	@scripts/dev.sh status

.PHONY: grafana
grafana: ## Port-forward Grafana to localhost:3000 and print its admin password
	@scripts/dev.sh grafana

.PHONY: e2e
e2e: ## After make dev: run the heavy profile and assert the trajectory the load-generator README promises (E2E_SCALE=0.3 shortens it)
	@scripts/dev.sh e2e

.PHONY: deploy-production
deploy-production: ## The production overlay on SURGE_CONTEXT (with SURGE_ALLOW_CONTEXT=yes): needs KEDA there, creates Grafana's Secret
	@scripts/dev.sh production

.PHONY: undeploy
undeploy: ## Remove everything `make dev` applied
	@scripts/dev.sh undeploy

.PHONY: bench
bench: tools ## The shipped binaries against a bare actix handler, the Python peer, wrk and oha: bench/RESULTS.md
	$(CARGO) build --release --workspace
	python3 bench/run.py

.PHONY: soak
soak: ## Ten minutes of mixed load on two consumers behind HAProxy: memory, descriptors, threads, errors -> bench/SOAK.md
	$(CARGO) build --release --workspace --bins
	python3 bench/soak.py

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all
