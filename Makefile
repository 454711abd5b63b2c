# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Each creates (or refreshes, when pyproject.toml changed) the local virtual environment .venv.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH  ?= torch==2.13.0
export OMP_NUM_THREADS ?= 2

.PHONY: demo test test-all test-slurm venv clean

venv: $(STAMP)

# torch is installed first and on its own: on a machine without CUDA, `torch==2.13.0` takes the
# CPU build; an unpinned torch (pulled in by another package) would fetch a multi-GB CUDA build.
$(STAMP): pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	@sh tools/ensure_system_deps.sh $(PY)
	$(PY) -m pip install -q --disable-pip-version-check $(TORCH)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/omnire-demo

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m ''

# Opt-in, as root: a single-node SLURM on this machine (Debian's slurm-wlm + munge), a tiny sweep
# with one job requeued and one signalled in the middle, checked against uninterrupted runs; the
# output is recorded in docs/measurements/test_slurm.md; the daemons are stopped afterwards
# (KEEP_SLURM=1 leaves them running).
test-slurm: $(STAMP)
	sh tools/slurm/setup_local_slurm.sh
	$(PY) -m checks.slurm_sweep --record docs/measurements/test_slurm.md; rc=$$?; \
	  [ -n "$(KEEP_SLURM)" ] || sh tools/slurm/stop_local_slurm.sh; exit $$rc

clean:
	rm -rf $(VENV) outputs
