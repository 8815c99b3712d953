"""pyproject.toml and environment.yml (conda / Binder) must pin the same versions; Binder gets a lab
where figures render (no MPLBACKEND) and the package itself (postBuild)."""

import re
import tomllib

import yaml

from reprobust.paths import REPO_ROOT

CONDA_NAMES = {"pytorch": "torch"}
#: In the `test` extra for CI's browser test only; Binder readers do not need them.
CI_ONLY = {"playwright"}


def _pyproject_pins():
    data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    extras = data["project"]["optional-dependencies"]
    deps = data["project"]["dependencies"] + extras["lab"] + [d for d in extras["test"]
                                                             if d.split("==")[0].lower() not in CI_ONLY]
    pins = {}
    for d in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^;\s]+)", d.strip())
        assert m, f"dependency {d!r} in pyproject.toml is not pinned with =="
        pins[m.group(1).lower()] = m.group(2)
    return pins


def _environment_pins():
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pins = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for line in dep.get("pip", []):
                m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
                if m:
                    pins[m.group(1).lower()] = m.group(2)
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)=([^=\s]+)", dep.strip())
        if m and m.group(1) != "python":
            pins[CONDA_NAMES.get(m.group(1).lower(), m.group(1).lower())] = m.group(2)
    return pins


def test_every_pyproject_pin_is_in_environment_yml_with_the_same_version():
    py, env = _pyproject_pins(), _environment_pins()
    missing = sorted(set(py) - set(env))
    assert not missing, f"in pyproject.toml but not environment.yml: {missing}"
    differ = {k: (py[k], env[k]) for k in py if env[k] != py[k]}
    assert not differ, f"versions differ (pyproject, environment.yml): {differ}"


def test_environment_yml_pins_nothing_pyproject_lacks():
    py, env = _pyproject_pins(), _environment_pins()
    assert sorted(set(env) - set(py)) == []


def test_test_extra_contains_the_lab_the_browser_test_opens():
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras["lab"]) <= set(extras["test"])
    assert any(d.startswith("playwright==") for d in extras["test"])


def test_binder_renders_figures_inline_and_installs_the_package():
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    # MPLBACKEND=Agg would stop matplotlib-inline from drawing any figure in the notebooks
    assert "MPLBACKEND" not in (env.get("variables") or {})
    post = (REPO_ROOT / "postBuild").read_text()
    assert "pip install --no-deps -e ." in post


def test_binder_badge_opens_the_notebooks_folder_in_jupyterlab():
    readme = (REPO_ROOT / "README.md").read_text()
    badges = re.findall(r"\(https://mybinder\.org/v2/gh/[^)]+\)", readme)
    assert badges and all("urlpath=lab/tree/notebooks" in b for b in badges), badges
