# Sightline — the two commands a fresh machine needs:
#   sudo make up     build and run server + agent for this host
#   sudo make test   install test dependencies (apt) and run every test, eBPF end-to-end included
# sudo resets PATH (secure_path), which usually drops /usr/local/go/bin.
GO      ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
GOFMT   ?= $(dir $(GO))gofmt
BIN     ?= bin/sightline
ARGS    ?=
FUZZTIME ?= 10s

.PHONY: all build up test test-go vet fuzz-short bench generate deps clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/sightline

up: build
	./$(BIN) up $(ARGS)

deps:
	./scripts/install-test-deps.sh

vet:
	@out=$$($(GOFMT) -l $$(git ls-files '*.go')) || exit 1; test -z "$$out" || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	$(GO) vet ./...

test-go:
	$(GO) test -count=1 -timeout 40m ./...

test: deps vet test-go fuzz-short

fuzz-short:
	FUZZTIME=$(FUZZTIME) GO=$(GO) ./scripts/fuzz-short.sh

bench: build
	GO=$(GO) ./bench/run.sh

# Rebuilds eBPF objects (clang) and protobuf code (protoc) that are committed.
generate:
	$(GO) generate ./...

clean:
	rm -rf bin
