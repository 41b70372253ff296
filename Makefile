# gmsv_realtime. `make test` and `make demo` are the two commands the README gives;
# both install what is missing (scripts/deps.sh) on Debian as root.

GO        ?= go
FUZZTIME  ?= 10s
PKGS      := ./...

.PHONY: all deps test unit fuzz lint module module-all demo bench

all: lint test

deps:
	@scripts/deps.sh

# Everything `go test -race` covers (unit, integration against a real
# redis-server, the Redis differential pattern test), a short run of every fuzz
# target, and the lint checks.
test: deps lint unit fuzz

unit:
	$(GO) test -race -count=1 -timeout 10m $(PKGS)

# One short run per fuzz target (the seed corpus also runs in `unit`).
fuzz:
	@set -e; for spec in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs grep -ho '^func Fuzz[A-Za-z0-9_]*' | sort -u | sed 's/^func //'); do \
	  pkg=$$(dirname $$(grep -rl --include='*_test.go' "^func $$spec(" . | head -1)); \
	  echo "fuzz $$pkg $$spec ($(FUZZTIME))"; \
	  $(GO) test -run '^$$' -fuzz "^$$spec$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Go micro-benchmarks of the hot paths; the end-to-end suite comes with the host.
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

module module-all demo:
	@echo "make $@: not built yet (the GMod module is issue 5, the host and demo issue 6)" >&2
	@exit 1
