# The project's tasks, in one place. docs/contributing.md, "Tasks", lists
# them; .ci/run runs lint, test, test-newest-go, check-generated and fuzz
# through them.
# Tools are pinned in tools/go.mod, a module of its own, so that users of
# durably do not inherit their dependencies.

GO       ?= go
TOOL     := $(GO) tool -modfile=tools/go.mod
# package:FuzzTarget:budget. `make fuzz` runs each target for its budget, a
# count of executions sized to about 10 s on a 2-core machine, unless
# FUZZTIME (e.g. FUZZTIME=60s) overrides it for all. The default is a count,
# not a duration, because go1.26's fuzz coordinator can report a duration's
# expiry as a failure ("context deadline exceeded", no failing input; fixed
# in go1.27, golang/go#75804) and a count has no deadline to race.
FUZZTIME ?=
FUZZ     := .:FuzzDecodeTransport:80000x \
            ./gen:FuzzLoad:40000x \
            ./runtime/durablyhttp:FuzzTriggerBody:8000x \
            ./runtime/durablyhttp:FuzzListQuery:40000x

# The newest Go release, for the second pass of CI (docs/contributing.md,
# "Go versions"); the go command fetches it through the module proxy. The
# machine's Go runs everything else: it is the oldest that go.mod allows.
NEWEST_GO ?= go1.27.3
# What the newest Go's pass tests, without -race: the engine, the stores,
# the handler and the generator, leaving out the tests of processes killed
# or cut off from the database (slow, and about the system more than Go).
NEWEST_GO_TESTS := . ./internal/... ./runtime/... ./gen/...
NEWEST_GO_SKIP  := Crash|Fleet|Outage|Frozen|Silent|LostAnswers|Ambiguous|TwoProcesses|Exit|EndsItsProcess|AttemptHistoryOutlives

.PHONY: help generate check-generated lint test test-newest-go fuzz bench ci

help:
	@echo "make generate         regenerate sqlc's query code and the typed jobs of the declarations"
	@echo "make check-generated  fail if the committed sqlc output is stale (builds sqlc)"
	@echo "make lint             gofmt, go vet, staticcheck (staticcheck.conf)"
	@echo "make test             the README's test command: go test -race ./..."
	@echo "make test-newest-go   build, vet and test the engine, stores and generator on NEWEST_GO ($(NEWEST_GO))"
	@echo "make fuzz             every fuzz target for its budget (about 10 s each), or for FUZZTIME"
	@echo "make bench            the full benchmark of BENCHMARKS.md (bench/run.sh); run nothing else meanwhile"
	@echo "make ci               everything CI runs (.ci/run), PostgreSQL included"

generate:
	$(TOOL) sqlc generate
	$(GO) run ./cmd/durably-gen durably.yaml
	$(GO) generate ./examples/tenants ./examples/orders ./cmd/durably-bench

check-generated:
	DURABLY_TEST_SQLC=1 $(GO) test -count=1 -run '^TestSQLCOutputIsCurrent$$' .

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:" >&2; echo "$$unformatted" >&2; exit 1; fi
	$(GO) vet ./...
	$(TOOL) staticcheck ./...

test:
	$(GO) test -race ./...

test-newest-go:
	GOTOOLCHAIN=$(NEWEST_GO) $(GO) version
	GOTOOLCHAIN=$(NEWEST_GO) $(GO) build ./...
	GOTOOLCHAIN=$(NEWEST_GO) $(GO) vet ./...
	GOTOOLCHAIN=$(NEWEST_GO) $(GO) test -skip '$(NEWEST_GO_SKIP)' $(NEWEST_GO_TESTS)

fuzz:
	@for target in $(FUZZ); do \
		pkg=$${target%%:*}; rest=$${target#*:}; name=$${rest%%:*}; budget=$${rest#*:}; \
		override="$(FUZZTIME)"; budget=$${override:-$$budget}; \
		echo "$(GO) test -run '^$$' -fuzz '^$$name$$' -fuzztime $$budget $$pkg"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $$budget $$pkg || exit 1; \
	done

bench:
	bench/run.sh

ci:
	.ci/run
