# Confiture hook worker. `make help` lists the targets.
GO        ?= go
BIN       := bin
PKGS      := ./...
# Tests create one database each on this server.
export TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@grep -E '^[a-zA-Z_/-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

.PHONY: build
build: ## Build bin/worker and bin/submit
	$(GO) build -o $(BIN)/worker ./cmd/worker
	$(GO) build -o $(BIN)/submit ./cmd/submit

.PHONY: run
run: build ## Run the example: worker on embedded NATS + local PostgreSQL, submit examples/migrations, follow it
	./scripts/run-example.sh

.PHONY: worker
worker: build ## Run the worker in the foreground (embedded NATS unless CONFITURE_NATS_URL is set)
	./$(BIN)/worker

.PHONY: test
test: ## Run the whole test suite with the race detector (needs PostgreSQL; NATS is embedded)
	$(GO) test -race -count=1 -timeout 9m $(PKGS)

.PHONY: test/race
test/race: test ## Same as test (the suite always runs with -race)

.PHONY: test/short
test/short: ## Run the tests without the race detector
	$(GO) test -count=1 -timeout 9m $(PKGS)

.PHONY: lint
lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

.PHONY: bench
bench: ## End-to-end benchmark beside the bare River chain baseline (prints p50/p99 and runs/s)
	$(GO) test -run='^$$' -bench=. -benchtime=1x -timeout 20m ./internal/bench/

.PHONY: fuzz
fuzz: ## Fuzz the request decoder, SQL splitter and hooks parser for 30s each
	$(GO) test -run='^$$' -fuzz=FuzzDecodeRequest -fuzztime=30s ./internal/contract/
	$(GO) test -run='^$$' -fuzz=FuzzSplit -fuzztime=30s ./internal/sqlscript/
	$(GO) test -run='^$$' -fuzz=FuzzParseHooks -fuzztime=30s ./internal/migrations/

.PHONY: tidy
tidy: ## go mod tidy for this module and examples/custom-worker (which follows this one's dependencies)
	$(GO) mod tidy
	cd examples/custom-worker && $(GO) mod tidy

.PHONY: clean
clean: ## Remove build output and the example's local state
	rm -rf $(BIN) .run
