"""Static checks of every notebook source (no execution): the parameters cell is complete and parsable."""

import re

import pytest

from reprobust import run

NOTEBOOKS = run.available_notebooks()


def test_the_five_notebooks_exist():
    assert [n[:2] for n in NOTEBOOKS] == ["01", "02", "03", "04", "05"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_parameter_line_is_seen_by_papermill(name):
    # papermill silently drops a parameter whose line it cannot parse (e.g. an '=' inside a comment),
    # and the runner would then refuse `-p` for it
    nb = run.read_notebook(name)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assigned = re.findall(r"^([A-Za-z_]\w*)\s*=", cell.source, flags=re.M)
    declared = run.notebook_parameters(nb)
    assert list(declared) == assigned
    assert set(run.COMMON_PARAMETERS) <= set(declared)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_sets_up_its_own_figure_folder_and_claims(name):
    source = (run.NOTEBOOKS_DIR / f"{name}.py").read_text()
    assert re.search(rf'setup_notebook\(\s*"{name}"', source), "setup_notebook must name the notebook itself"
    assert "ClaimsTable" in source and ".save(ctx" in source
