# flocon: build, test, bench. `make check` is the whole suite (CI runs it).
GO ?= go
BIN ?= bin/flocon
# make install: DESTDIR (staging root) and PREFIX as usual.
PREFIX ?= /usr/local
DESTDIR ?=
UNITDIR ?= $(PREFIX)/lib/systemd/system
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
CGO ?= 0
LDFLAGS ?= -X github.com/flocon/flocon/node.Version=$(VERSION)

.PHONY: build install install-files uninstall package-check test test-e2e lint check fuzz bench bench-gateway bench-verify bench-p2p bench-go clean

# CGO=0: a static binary, as the package builds it (PKGBUILD): no libc
# mapped (1.5 MiB of RSS), Go's own DNS resolver.
build:
	CGO_ENABLED=$(CGO) $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/flocon

# install: the binary, the systemd unit (ExecStart pointed at PREFIX), the
# example config and shell completions. It does not write /etc: copy the
# example to /etc/flocon/flocon.toml to change a setting.
install: build install-files

install-files:
	install -Dm755 $(BIN) $(DESTDIR)$(PREFIX)/bin/flocon
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|/usr/bin/flocon|$(PREFIX)/bin/flocon|' cmd/flocon/flocon.service >$(DESTDIR)$(UNITDIR)/flocon.service
	chmod 644 $(DESTDIR)$(UNITDIR)/flocon.service
	install -Dm644 cmd/flocon/flocon.example.toml $(DESTDIR)$(PREFIX)/share/doc/flocon/flocon.example.toml
	install -d $(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(PREFIX)/share/zsh/site-functions \
		$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	$(BIN) completion bash >$(DESTDIR)$(PREFIX)/share/bash-completion/completions/flocon
	$(BIN) completion zsh >$(DESTDIR)$(PREFIX)/share/zsh/site-functions/_flocon
	$(BIN) completion fish >$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/flocon.fish

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/flocon $(DESTDIR)$(UNITDIR)/flocon.service \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions/flocon \
		$(DESTDIR)$(PREFIX)/share/zsh/site-functions/_flocon \
		$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/flocon.fish
	rm -rf $(DESTDIR)$(PREFIX)/share/doc/flocon

# package-check: makepkg builds cmd/flocon/dist/PKGBUILD (as on Arch; Debian
# has makepkg too) and the package holds what it should.
package-check:
	./scripts/makepkg-check.sh

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
