# Sightline — the two commands a fresh machine needs:
#   sudo make up     build and run server + agent for this host
#   sudo make test   install test dependencies (apt) and run every test, eBPF end-to-end included
GO      ?= go
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
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

test-go:
	$(GO) test -count=1 -timeout 40m ./...

test: deps vet test-go fuzz-short

fuzz-short:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz-short.sh

bench: build
	./bench/run.sh

# Rebuilds eBPF objects (clang) and protobuf code (protoc) that are committed.
generate:
	$(GO) generate ./...

clean:
	rm -rf bin
