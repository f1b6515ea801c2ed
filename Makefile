# jobrelay: `make run` runs the pipeline against local PostgreSQL and Redis;
# `make test` runs the tests against them.

GO      ?= go
BIN     := bin/jobrelay
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# golangci-lint, pinned; `go run` builds it once into the build cache.
GOLANGCI_LINT := github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
# promtool tests deploy/alerts.yml (TestAlertRules). One on PATH is used;
# otherwise `make promtool` builds this version into PROMTOOL_DIR (bin/; a
# few minutes, once).
PROMTOOL_VERSION := v0.316.0
PROMTOOL_DIR ?= $(CURDIR)/bin
PROMTOOL ?= $(or $(shell command -v promtool 2>/dev/null),$(PROMTOOL_DIR)/promtool)

.PHONY: build run test bench up lint clean promtool

## build: the jobrelay binary, in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/jobrelay

## run: migrate, relay and consume against local PostgreSQL and Redis
run: build
	$(BIN) run

## test: every test, with the race detector, against the real servers
test: promtool
	PROMTOOL=$(PROMTOOL) $(GO) test -race -count=1 -timeout 15m ./...

## promtool: Prometheus's promtool, which the alert rules' test runs; installed unless there
promtool:
	@test -x $(PROMTOOL) || { echo "installing promtool $(PROMTOOL_VERSION) in $(PROMTOOL_DIR)"; \
		GOBIN=$(PROMTOOL_DIR) $(GO) install github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION); }

## bench: measure against the local servers, print the table and write BENCHMARKS.md
bench:
	$(GO) run ./cmd/jobrelay-bench -out BENCHMARKS.md

## up: the compose deployment (needs Docker)
up:
	docker compose up --build

## lint: go vet and golangci-lint (.golangci.yaml; staticcheck included), fetched by go run
lint:
	$(GO) vet ./...
	$(GO) run $(GOLANGCI_LINT) run ./...

clean:
	rm -rf bin
