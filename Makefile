# Surge: `make help` lists the targets. `make test` is everything CI checks.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo
PORT ?= 8000

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_%-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: ## Build and start the consumer on port $(PORT)
	$(CARGO) run --release --bin consumer -- --port $(PORT)

.PHONY: build
build: ## Build the consumer and the generator (release)
	$(CARGO) build --release --workspace

.PHONY: test
test: lint ## Everything CI checks: lint, then every test of the workspace
	$(CARGO) test --workspace --all-targets

.PHONY: lint
lint: ## cargo fmt --check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all
