#!/usr/bin/env bash
# One command for everything:
#   ./run_all.sh                 set up .venv if needed, then run every notebook (quick profile) into figures/
#   ./run_all.sh --test [ARGS]   set up .venv if needed, then run the test suite (pytest ARGS)
#   ./run_all.sh --lab [ARGS]    set up .venv (with JupyterLab) if needed, then start JupyterLab on notebooks/
#   ./run_all.sh --profile smoke --only 03 -p epochs 2   (any option of `python -m reprobust.run --help`)
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv
if [ ! -x "$VENV/bin/python" ]; then
    echo "setting up $VENV (first run: a few minutes) ..."
    "$PYTHON" -m venv "$VENV"
fi
# Reinstall only when the dependency pins change. The `test` extra includes JupyterLab and Playwright
# (the browser test opens the notebooks in JupyterLab), so every command gets the same environment.
STAMP="$VENV/.reprobust-install"
WANT=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e ".[test,lab]"
    # Test-only reference for the APGD tests; --no-deps because torchattacks 3.5.1 pins an old requests
    # that it does not import (keep in step with [tool.reprobust] test-no-deps in pyproject.toml).
    "$VENV/bin/python" -m pip install --quiet --no-deps "torchattacks==3.5.1"
    echo "$WANT" > "$STAMP"
fi

export PATH="$PWD/$VENV/bin:$PATH"
export PYTHONHASHSEED=0

if [ "${1:-}" = "--lab" ]; then
    shift
    # No MPLBACKEND here: the kernel then uses matplotlib-inline and figures render in the notebook.
    # Open a notebook with right-click -> Open With -> Notebook (jupytext pairs notebooks/*.py).
    exec python -m jupyterlab --ServerApp.root_dir="$PWD" --LabApp.default_url=/lab/tree/notebooks "$@"
fi
export MPLBACKEND=Agg
if [ "${1:-}" = "--test" ]; then
    shift
    exec python -m pytest "$@"
fi
exec python -m reprobust.run "$@"
