# One command to run the app locally, one to test it; both install what they need first.
# The app targets Python 3.13 (what Azure Functions runs it on); PYTHON may name an interpreter.
PYTHON ?= $(shell for candidate in python3.13 $$(pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13; do \
	"$$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null && { echo "$$candidate"; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
# checkov, which scans infra/ in the tests, with its own pinned dependencies.
INFRA_VENV := .tools/infra-checkers

.PHONY: install lock python run test lint unit go-unit plugin spire-server spire-agent e2e bench load clean

install: $(VENV)/.installed-3.13 node_modules/.installed

python:
	@test -n "$(PYTHON)" || { echo "Python 3.13 is needed: put python3.13 on PATH (or install it with pyenv), or run make PYTHON=/path/to/python3.13" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' || { echo "$(PYTHON) is not Python 3.13" >&2; exit 1; }

# The lock first, checked against its hashes as a deployment installs it; then the tools, held to the
# versions just installed (pip's hash checking would demand hashes of the tools too if the
# constraints were the lock itself), so the tests run exactly what a deployment runs.
$(VENV)/.installed-3.13: requirements.txt requirements-dev.txt | python
	$(PYTHON) -m venv --clear $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements.txt
	$(PY) -m pip freeze --all > $(VENV)/runtime-constraints.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt -c $(VENV)/runtime-constraints.txt
	touch $@

# requirements.txt: requirements.in's ranges resolved for Azure Functions' Linux x86_64 Python 3.13,
# with the hashes of every file of each version. It keeps the versions it holds while they still
# fit requirements.in; `make lock LOCK_FLAGS=--upgrade` moves everything to the newest that fits.
lock: $(VENV)/.installed-3.13
	$(VENV)/bin/uv pip compile requirements.in --output-file requirements.txt --generate-hashes \
		--python-version 3.13 --python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" \
		--quiet $(LOCK_FLAGS)

$(INFRA_VENV)/.installed: requirements-infra.txt | python
	$(PYTHON) -m venv --clear $(INFRA_VENV)
	$(INFRA_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(INFRA_VENV)/bin/python -m pip install --quiet -r requirements-infra.txt
	touch $@

# Azurite, pinned in package-lock.json.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Azurite (10000), the local Key Vault (8443, token 8080), the local Entra ID (8444, managed identity
# 8081) and the app on devhost (7071); other ports with ARGS, e.g. make run ARGS="--port 27071".
run: install
	$(PY) -m devtools.stack $(ARGS)

# The whole suite; integration tests start their own stand-ins on free ports.
test: install $(INFRA_VENV)/.installed go-unit lint
	$(PY) -m pytest

# ruff's format and lint, and mypy --strict on the app (settings in pyproject.toml).
lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The unit tests alone: no stand-ins, no network.
unit: install go-unit
	$(PY) -m pytest tests/unit

# The SPIRE plugin's unit tests (against an in-process HTTP server), and the mint benchmark client's,
# each module checked by go vet and staticcheck first. staticcheck is built from the Go module proxy
# at this version (checked against the checksum database) and cached by go, with no install step
# and nothing added to the modules' own dependencies.
STATICCHECK := go run honnef.co/go/tools/cmd/staticcheck@v0.8.2
go-unit:
	cd spire-plugin && go vet ./... && $(STATICCHECK) ./... && go test ./...
	cd devtools/spire && go vet ./mintbench && $(STATICCHECK) ./mintbench && go test ./mintbench

# The SPIRE KeyManager plugin: static binaries for linux/amd64 and linux/arm64 (SPIRE's server images)
# with their SHA256SUMS, and bin/azure-kv-keymanager for this machine (e2e and bench run it).
# Reproducible: the toolchain go.mod names (go fetches it from the module proxy if the local go is
# another), the environment that changes code generation fixed, no paths, VCS stamp or build id.
PLUGIN := spire-plugin/bin/azure-kv-keymanager
PLUGIN_PLATFORMS := linux/amd64 linux/arm64
GO_BUILD = GOTOOLCHAIN=$(shell sed -n 's/^toolchain //p' spire-plugin/go.mod) \
	CGO_ENABLED=0 GOFLAGS= GOAMD64=v1 GOARM64=v8.0 GOEXPERIMENT= go build -trimpath -buildvcs=false -ldflags='-s -w -buildid='
plugin:
	cd spire-plugin && for platform in $(PLUGIN_PLATFORMS); do \
		GOOS=$${platform%/*} GOARCH=$${platform#*/} $(GO_BUILD) -o bin/azure-kv-keymanager-$${platform%/*}-$${platform#*/} . || exit; \
	done
	cd spire-plugin/bin && sha256sum $(foreach platform,$(PLUGIN_PLATFORMS),azure-kv-keymanager-$(subst /,-,$(platform))) > SHA256SUMS && cat SHA256SUMS
	cd spire-plugin && $(GO_BUILD) -o bin/azure-kv-keymanager .

# spire-server at the version devtools/spire/go.mod pins, built from the Go module proxy once per
# version into a cache outside the clone (a cold build takes about 20 minutes on 2 cores).
SPIRE_VERSION = $(shell cd devtools/spire && go list -m -f '{{.Version}}' github.com/spiffe/spire)
SPIRE_SERVER = $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/azure-kv-keymanager/spire-server-$(SPIRE_VERSION)/spire-server
spire-server:
	@test -x "$(SPIRE_SERVER)" || { \
		echo "Building spire-server $(SPIRE_VERSION) into $(dir $(SPIRE_SERVER)), once: about 20 minutes on 2 cores when nothing is cached"; \
		started=$$(date +%s); \
		(cd devtools/spire && GOBIN="$(dir $(SPIRE_SERVER))" go install github.com/spiffe/spire/cmd/spire-server) || exit; \
		echo "Built spire-server $(SPIRE_VERSION) in $$(( $$(date +%s) - started )) s"; }

# spire-agent of the same version, beside it (a few minutes more once spire-server's modules are cached).
SPIRE_AGENT = $(dir $(SPIRE_SERVER))spire-agent
spire-agent:
	@test -x "$(SPIRE_AGENT)" || { echo "Building spire-agent $(SPIRE_VERSION) into $(dir $(SPIRE_AGENT))"; \
		cd devtools/spire && GOBIN="$(dir $(SPIRE_AGENT))" go install github.com/spiffe/spire/cmd/spire-agent; }

# A real spire-server and spire-agent with the plugin against the local stack; prints each step's result.
e2e: install plugin spire-server spire-agent
	SPIRE_SERVER="$(SPIRE_SERVER)" SPIRE_AGENT="$(SPIRE_AGENT)" $(PY) -m devtools.spire.e2e
	SPIRE_SERVER="$(SPIRE_SERVER)" $(PY) -m pytest tests/e2e

# Request budgets, overhead, cold start, concurrency, memory and spire-server mint latency; writes bench-results.json.
bench: install plugin spire-server
	SPIRE_SERVER="$(SPIRE_SERVER)" $(PY) -m benchmarks

# A fleet of spire-servers on one vault held to Key Vault's limits (scaled), through the plugin and
# through SPIRE's built-in azure_key_vault: a mass first start, 100% and 200% of the limit, recovery,
# then a soak; prints the table, writes load-results.json. About 20 minutes; shorter with, e.g.,
# make load ARGS="--seconds 20 --soak-minutes 3" (python -m benchmarks.load --help).
load: install plugin spire-server
	SPIRE_SERVER="$(SPIRE_SERVER)" $(PY) -m benchmarks.load $(ARGS)

clean:
	rm -rf $(VENV) $(INFRA_VENV) node_modules .local .pytest_cache
