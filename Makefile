# caisson — build, test and benchmark. `make help` lists the targets.
GO        ?= go
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
BIN       := bin/caisson
LDFLAGS   := -s -w -X main.version=$(VERSION)
# The sandbox binary is static (no cgo): it must start fast and must not depend on the host's NSS at run time.
GOBUILD   := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)"
# caisson-oci links its pre-runtime stage (cmd/caisson/internal/nsenter) through cgo, statically, against musl when
# musl-gcc is installed (it starts faster than a static glibc binary), else glibc; user and DNS lookups stay pure Go.
OCICC     ?= $(shell command -v musl-gcc >/dev/null 2>&1 && echo musl-gcc || echo gcc)
OCIBUILD  := CGO_ENABLED=1 CC=$(OCICC) $(GO) build -trimpath -tags osusergo,netgo -ldflags "$(LDFLAGS) -linkmode external -extldflags -static"
# On linux/amd64 bin/caisson starts at package prefault's entry, before the Go runtime: one system call maps the
# binary's code and read-only data instead of a page fault per 64 KB touched (issue 14; see that package).
ENTRY     := $(if $(filter amd64,$(shell $(GO) env GOARCH)),-E github.com/caisson-sandbox/caisson/cmd/caisson/internal/prefault.entry)
# bin/caisson is built without Go 1.26's default Green Tea garbage collector while the toolchain offers the opt-out
# (GOEXPERIMENT=nogreenteagc; a later Go may drop it, and the build then takes the default): Green Tea keeps each
# span's mark bits in its last page, one more page touched per kind of object a process allocates, ~160 KiB more
# per sandbox at 30 (issue 14), while caisson's processes hardly ever collect.
GCEXP     := $(shell GOEXPERIMENT=nogreenteagc $(GO) env GOEXPERIMENT >/dev/null 2>&1 && echo nogreenteagc)
# The build of bin/caisson, and of the benchmark's variants of it (bin/caisson-nowait).
CAISSONBUILD = CGO_ENABLED=0 GOEXPERIMENT=$(GCEXP) $(GO) build -trimpath -ldflags "$(LDFLAGS) $(ENTRY)"
TEST_USER ?= caissontest
# make install: $(DESTDIR)$(PREFIX)/bin, .../share/man/man1 and the shells' completion directories.
PREFIX    ?= /usr/local
DESTDIR   ?=
BINDIR    := $(DESTDIR)$(PREFIX)/bin
MANDIR    := $(DESTDIR)$(PREFIX)/share/man/man1
SHAREDIR  := $(DESTDIR)$(PREFIX)/share
# The programs make install copies from bin/ (more go here, e.g. links to caisson, as they come).
INSTALL_BINS := caisson caisson-image caisson-oci

.PHONY: all build bin/caisson-nowait man install test unit integration lint bench soak conformance clean help

all: build ## build bin/caisson

build: ## build the static binaries bin/caisson, bin/caisson-image (image archives) and bin/caisson-oci (the OCI runtime)
	$(CAISSONBUILD) -o $(BIN) ./cmd/caisson
	$(GOBUILD) -o bin/caisson-image ./cmd/caisson/caisson-image
	$(OCIBUILD) -o bin/caisson-oci ./cmd/caisson/caisson-oci

man: build ## the man pages bin/man/caisson.1, bin/man/caisson-run.1, ... (generated from the flag definitions)
	rm -rf bin/man
	$(BIN) man bin/man

install: build man ## install the binaries, man pages and bash/zsh/fish completions under $(DESTDIR)$(PREFIX) (default /usr/local)
	install -d $(BINDIR) $(MANDIR) $(SHAREDIR)/bash-completion/completions $(SHAREDIR)/zsh/site-functions $(SHAREDIR)/fish/vendor_completions.d
	install -m 0755 $(addprefix bin/,$(INSTALL_BINS)) $(BINDIR)/
	install -m 0644 bin/man/*.1 $(MANDIR)/
	$(BIN) completion bash >$(SHAREDIR)/bash-completion/completions/caisson
	$(BIN) completion zsh >$(SHAREDIR)/zsh/site-functions/_caisson
	$(BIN) completion fish >$(SHAREDIR)/fish/vendor_completions.d/caisson.fish

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt needed'; exit 1; }
	$(GO) vet ./...

# Unit tests need no privileges. Their kernel-facing tests need an unprivileged user: here they may skip (strict mode
# off), and `make integration` runs them again, strictly, as that user.
unit: ## unit tests with the race detector (any user, no privileges)
	CAISSON_TEST_STRICT= $(GO) test -race -count=1 $$($(GO) list ./... | grep -v /tests)

integration: build ## integration tests of bin/caisson (as root: provisions, then runs them as $(TEST_USER))
	./tests/run-integration.sh

test: lint unit integration ## everything CI runs: lint, unit tests, integration tests

# caisson without its exit wait for the network helper (build tag caisson_nowait), built as bin/caisson is: what
# that wait costs (tests/bench.sh).
bin/caisson-nowait:
	$(CAISSONBUILD) -tags caisson_nowait -o $@ ./cmd/caisson

bench: build bin/caisson-nowait ## one comparative report bench/report.md + bench/*.png: caisson vs bubblewrap, unshare, rootlesskit, podman
	./tests/bench.sh

conformance: build ## the OCI runtime-tools suite against caisson-oci beside runc (as root); fails below the floor
	./tests/conformance.sh

soak: build ## 1000 sandboxes, 50 at a time, with random kills of caisson and its network helpers; nothing may leak
	CAISSON_SOAK_N=1000 CAISSON_SOAK_PAR=50 CAISSON_TEST_RUN='^TestSoak$$' CAISSON_TEST_PKGS=./tests ./tests/run-integration.sh

clean: ## remove build output
	rm -rf bin
