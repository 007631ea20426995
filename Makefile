# flocon: build, test, bench. `make check` is the whole suite (CI runs it).
GO ?= go
BIN ?= bin/flocon

.PHONY: build test test-e2e lint check fuzz bench bench-gateway bench-verify bench-p2p bench-go clean

build:
	$(GO) build -trimpath -o $(BIN) ./cmd/flocon

lint:
	@test -z "$$(gofmt -l . | tee /dev/stderr)"
	$(GO) vet ./...

test:
	$(GO) test -race $$($(GO) list ./... | grep -v /test/e2e)

test-e2e:
	$(GO) test -count=1 -timeout 20m ./test/e2e/...

check:
	./scripts/test-selfcheck.sh
	./scripts/test.sh

# fuzz: every fuzz target of the module for FUZZTIME each (targets are
# discovered with go test -list; `make test` runs their seed corpora).
FUZZTIME ?= 20s
fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

# bench: every benchmark table in one run (gateway beside nginx as ratios,
# the verify rows and the peer path; bench-go: the Go micro-benchmarks).
bench: bench-gateway

bench-gateway:
	./scripts/bench.sh

bench-verify:
	./scripts/bench-verify.sh

bench-p2p:
	./scripts/bench-p2p.sh

bench-go:
	$(GO) test -run '^$$' -bench . -benchtime 3x ./verify/ ./store/... ./gateway/ ./node/

clean:
	rm -rf bin
