# SPANER developer entry points. `make test` and `make demo` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.spaner-installed
BASE_STAMP := $(VENV)/.spaner-base
TEST_EXTRAS := dev,milvus,ray,wakeword

.PHONY: install test test-fast lint demo soak clean

# INSTALLER=uv (the default) installs with uv, a parallel installer: the ~5 GB CUDA torch stack
# takes ~35 s here against ~3 min with pip. uv comes from PyPI into the venv; if it cannot be had
# or fails, pip installs instead. uv does not read pip's configuration: where pip's main index is
# replaced (index-url in pip.conf or PIP_INDEX_URL: a mirror), pip installs. Extra indexes (a
# CPU-only torch index, say) are not passed on: give uv UV_EXTRA_INDEX_URL, or INSTALLER=pip.
# Bytecode: uv does not compile at install (pip does, for everything: 35 s here). Instead the
# processes `make` starts write the bytecode of what they import, once: PYTHONDONTWRITEBYTECODE
# (set on the project's build VMs) is not passed to them. With it, and no bytecode, every process,
# each test's child process included, compiled torch and gradio again (the suite took 13 min
# instead of 8). The first `make demo` compiles only what it imports: ~17 s instead of 35.
unexport PYTHONDONTWRITEBYTECODE
PIP_INDEX_SET := $(shell $(PYTHON) -m pip config list 2>/dev/null | grep -qE '(^|\.)index-url=' && echo yes)
INSTALLER ?= $(if $(PIP_INDEX_SET),pip,uv)
UV := $(VENV)/bin/uv
PIP_INSTALL := $(PY) -m pip install --quiet --upgrade pip && $(PY) -m pip install --quiet
define venv_install
	@if [ "$(INSTALLER)" = uv ] && { [ -x $(UV) ] || $(PY) -m pip install --quiet uv; }; then \
	  echo "installing $(1) with uv"; \
	  $(UV) pip install --quiet --python $(PY) $(1) \
	    || { echo "uv failed; installing with pip"; $(PIP_INSTALL) $(1); }; \
	else \
	  echo "installing $(1) with pip"; $(PIP_INSTALL) $(1); \
	fi
endef

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-install only when the packaging metadata changes. The demo needs only the package;
# the tests also need the dev, milvus and ray extras.
$(BASE_STAMP): pyproject.toml setup.py | $(PY)
	$(call venv_install,-e .)
	touch $(BASE_STAMP)

$(STAMP): pyproject.toml setup.py | $(PY)
	$(call venv_install,-e '.[$(TEST_EXTRAS)]')
	touch $(STAMP) $(BASE_STAMP)

install: $(STAMP)

# The suite runs on TEST_WORKERS processes (pytest-xdist; a module's tests stay on one worker, so
# its fixtures are built once). TEST_WORKERS=0 runs it in this process alone.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope

test: $(STAMP)
	$(PYTEST)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

# The embedded offline demo: digits data set -> few-shot training -> store -> API + UI on
# http://127.0.0.1:7860 (everything cached under .spaner-demo/, so later runs start in seconds).
demo: $(BASE_STAMP)
	$(VENV)/bin/spaner demo --workdir .spaner-demo --host 127.0.0.1 --port 7860

# Bounded 60 s load run over loopback (searches of every modality + adds + deletes); see RELIABILITY.md.
soak: $(STAMP)
	$(PY) benchmarks/soak.py --seconds 60

lint: $(STAMP)
	$(VENV)/bin/ruff check spaner encoders index app tests benchmarks studies
	$(VENV)/bin/ruff format --check spaner encoders index app tests benchmarks studies

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .spaner-demo
