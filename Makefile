# Two commands do all the set-up on a fresh machine (Python 3.11, no GPU needed):
#   make demo   the paper's findings at CPU scale on the embedded dataset (cpu profile, 3 seeds), every other
#               experiment at smoke scale, then every figure, table and finding, and figures/index.html
#   make test   the whole test suite
# Both create .venv and install the project with pinned versions (constraints.txt) on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
WORKERS ?= 2
STAMP  := $(VENV)/.installed

.PHONY: install git-filter demo test slurm-test lint lab figures sweep benchmark clean-smoke

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@date +%s > /tmp/.cldst-install-start-$$PPID
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	# notebooks are committed without outputs (.gitattributes names the filter; outside git: nothing to do)
	-git rev-parse --git-dir >/dev/null 2>&1 && $(MAKE) --no-print-directory git-filter
	@echo $$(( $$(date +%s) - $$(cat /tmp/.cldst-install-start-$$PPID) )) > $(VENV)/.install_seconds; \
		rm -f /tmp/.cldst-install-start-$$PPID  # cldst demo reports the install time
	touch $@

# The git filter that commits notebooks without outputs, nor the kernel's language_info (JupyterLab writes
# the Python version there when a kernel starts: opening a notebook must not modify it in git's eyes).
git-filter:
	$(BIN)/nbstripout --install --attributes .gitattributes
	git config filter.nbstripout.extrakeys "metadata.language_info"

demo: $(STAMP)
	$(BIN)/cldst demo --workers $(WORKERS)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

# The cluster tests against a real single-node Slurm that .ci/slurm_up.sh brings up (as root; stop it with
# .ci/slurm_down.sh). About 5 minutes on an idle 2-core machine.
slurm-test: $(STAMP)
	.ci/slurm_up.sh
	$(BIN)/python -m pytest -q -p no:xdist tests/test_slurm.py

# --allow-root: a container's user is often root, where JupyterLab otherwise refuses to start. The save hook
# keeps a notebook that was only opened byte for byte the committed one; after a save with outputs, git is
# told the file is unchanged when the clean filter says so (cldst/lab.py).
# LAB_ARGS: more JupyterLab options, e.g. make lab LAB_ARGS="--no-browser --port 8890"
lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=. --allow-root --ContentsManager.pre_save_hook=cldst.lab.before_save \
		--FileContentsManager.post_save_hook=cldst.lab.after_save $(LAB_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check cldst tests benchmarks notebooks

figures: $(STAMP)
	$(BIN)/cldst figures --profile $(or $(PROFILE),smoke)

benchmark: $(STAMP)
	$(BIN)/python benchmarks/speed.py

clean-smoke:
	rm -rf papermill_runs/smoke figures/*.pdf figures/*.png tables/*.csv tables/*.md tables/*.tex
