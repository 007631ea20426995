# flocon: build, test, bench. `make check` is the whole suite (CI runs it).
GO ?= go
BIN ?= bin/flocon

.PHONY: build test test-e2e lint check bench clean

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
	./scripts/test.sh

bench:
	./scripts/bench.sh

clean:
	rm -rf bin
