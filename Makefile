# Confiture hook worker. `make help` lists the targets.
GO        ?= go
BIN       := bin
# The binaries' --version names the commit they were built from: stamp it even where GOFLAGS
# turns version control stamping off (a build outside a git checkout stamps nothing, and says so).
VCS_FLAG  := -buildvcs=auto
PKGS      := ./...
# Tests create one database each on this server.
export TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@grep -E '^[a-zA-Z_/-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

.PHONY: build
build: ## Build bin/worker and bin/submit (their --version names the commit)
	$(GO) build $(VCS_FLAG) -o $(BIN)/worker ./cmd/worker
	$(GO) build $(VCS_FLAG) -o $(BIN)/submit ./cmd/submit

.PHONY: install
install: ## Install worker and submit into $(go env GOBIN) (or $(go env GOPATH)/bin), the names the docs use
	$(GO) install $(VCS_FLAG) ./cmd/worker ./cmd/submit

.PHONY: run
run: build ## Run the example: worker on embedded NATS + local PostgreSQL, submit examples/migrations, follow it
	./scripts/run-example.sh

.PHONY: worker
worker: build ## Run the worker in the foreground (embedded NATS unless CONFITURE_NATS_URL is set)
	./$(BIN)/worker

.PHONY: test
test: ## Run the whole test suite with the race detector (needs PostgreSQL; NATS is embedded)
	$(GO) test -race -count=1 -parallel 8 -timeout 9m $(PKGS)

.PHONY: docs-check
docs-check: ## Run the shell blocks of README.md and docs/ as a reader would, in a sandbox (needs PostgreSQL)
	CONFITURE_DOCS_RUN=1 $(GO) test -run '^TestDocsRun$$' -count=1 -timeout 15m -v ./internal/docscheck/

# The screenshots of docs/images, taken by the Chromium tests (CONFITURE_SCREENSHOT_DIR keeps them).
DOCS_IMAGES := runs-page-run.png dryrun-report.png dryrun-three-tables.png

.PHONY: docs-images
docs-images: ## Regenerate the screenshots in docs/images with headless Chromium (needs PostgreSQL and chromium)
	@command -v $${CHROMIUM:-chromium} >/dev/null || { echo "docs-images needs Chromium: apt-get install chromium, or set CHROMIUM"; exit 1; }
	@set -e; dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
		CONFITURE_SCREENSHOT_DIR=$$dir $(GO) test -count=1 -run '^TestRunsPageInChromium$$' ./internal/worker/; \
		CONFITURE_SCREENSHOT_DIR=$$dir $(GO) test -count=1 -run '^(TestPageInChromium|TestExamplePageInChromium)$$' ./internal/dryrunpage/; \
		for f in $(DOCS_IMAGES); do cp "$$dir/$$f" docs/images/; echo "docs/images/$$f"; done

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
bench: ## Benchmarks: end-to-end beside a bare River chain (p50/p99, runs/s); a fresh database beside goose and psql; 1,000 migrations (memory, events); a rollout over 1,000 schema targets beside goose
	$(GO) test -run='^$$' -bench=. -benchtime=1x -timeout 20m ./internal/bench/

# Fuzz targets, as <package>:<target>; each has a seed corpus in <package>/testdata/fuzz/<target>.
FUZZ_TARGETS := \
	./internal/contract/:FuzzDecodeRequest \
	./internal/contract/:FuzzCanonicalJSON \
	./internal/signing/:FuzzVerifyRequest \
	./internal/sqlscript/:FuzzSplit \
	./internal/migrations/:FuzzParseHooks \
	./internal/migrations/:FuzzParseSections \
	./internal/plugin/:FuzzParseManifest
FUZZTIME ?= 30s

.PHONY: fuzz
fuzz: ## Fuzz request decoding, signatures, the SQL splitter, the hooks, goose and dbmate file and manifest parsers, FUZZTIME each (30s)
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$name in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) $$pkg; \
	done

.PHONY: fuzz-ci
fuzz-ci: ## Every fuzz target for 10s, as CI runs them after the tests
	@$(MAKE) --no-print-directory fuzz FUZZTIME=10s

# The fault campaign (internal/chaos): seeded random schedules of crashes, cancellations and
# outages against worker processes, then a check of the guarantees. CHAOS_SEED is the first
# schedule's seed (default: the clock, printed; set it to replay), CHAOS_REPORT a path for the
# report as JSON. Without -race: every worker is a copy of the test binary (see its doc.go).
CHAOS_SCHEDULES ?= 5
CHAOS_DURATION  ?= 60s
CHAOS_TIMEOUT   ?= 90m

.PHONY: chaos
chaos: ## Fault campaign: CHAOS_SCHEDULES (5) schedules of a CHAOS_DURATION (60s) fault window; CHAOS_SEED replays
	CONFITURE_CHAOS=1 CHAOS_SEED=$(CHAOS_SEED) CHAOS_SCHEDULES=$(CHAOS_SCHEDULES) CHAOS_DURATION=$(CHAOS_DURATION) \
		CHAOS_REPORT=$(CHAOS_REPORT) $(GO) test -run '^TestChaos$$' -count=1 -timeout $(CHAOS_TIMEOUT) -v ./internal/chaos/

.PHONY: chaos-ci
chaos-ci: ## A short fault campaign (2 schedules of 40s, under 5 minutes), as CI runs it after the tests
	@$(MAKE) --no-print-directory chaos CHAOS_SCHEDULES=2 CHAOS_DURATION=40s CHAOS_TIMEOUT=15m

.PHONY: tidy
tidy: ## go mod tidy for this module and examples/custom-worker (which follows this one's dependencies)
	$(GO) mod tidy
	cd examples/custom-worker && $(GO) mod tidy

.PHONY: clean
clean: ## Remove build output and the example's local state
	rm -rf $(BIN) .run
