"""pyproject.toml and environment.yml must pin the same versions."""

import re
import tomllib

import yaml

from reprobust.paths import REPO_ROOT

CONDA_NAMES = {"pytorch": "torch"}


def _pyproject_pins():
    data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    deps = data["project"]["dependencies"] + data["project"]["optional-dependencies"]["test"]
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
