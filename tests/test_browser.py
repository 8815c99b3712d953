"""The reader's path: open a notebook in JupyterLab in a real browser, switch it to the smoke profile
in the parameters cell, run all cells, and check what the reader sees.

Opt-in (it installs Debian's ``chromium`` as root when it is missing and starts a JupyterLab server
on localhost): set ``REPROBUST_TEST_BROWSER=1`` (``.ci/run`` does) or select ``pytest -m browser``.
Playwright (PyPI, in the ``test`` extra) drives the system browser at ``/usr/bin/chromium``; it never
downloads a browser of its own. Whatever this machine cannot do is a skip that states the reason.

The server runs on a copy of ``notebooks/`` (plus ``jupytext.toml``) in a temporary folder, so the
test's edits and saves never touch the repository; the kernel imports the package under test, caches
into a temporary folder and, on the smoke profile, writes its figures into ``build/smoke/<notebook>``.
Screenshots (``<notebook>-figure.png``: the first figure; ``<notebook>.png``: the claims table) go to
``build/browser/``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from reprobust.paths import BUILD_DIR, NOTEBOOKS_DIR, REPO_ROOT

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
#: Opened as notebooks in the browser: the feature-map notebook and one more.
NOTEBOOKS = ("05_feature_maps", "01_raw_zero_shot")
RUN_TIMEOUT_S = 600          # all cells of one smoke notebook, on a loaded 2-core machine
SCREENSHOTS = BUILD_DIR / "browser"

# True once every code cell shows an execution count, or as soon as a cell shows a traceback
# (JupyterLab stops "Run All" at the first error; the later cells then never run).
FINISHED_JS = r"""() => {
  const prompts = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')]
      .map(e => e.textContent.trim());
  const busy = prompts.some(t => t.includes('*'));
  const failed = [...document.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
      .some(e => e.textContent.includes('Traceback (most recent call last)'));
  const done = prompts.length > 0 && prompts.every(t => /^\[\d+\]:$/.test(t));
  return !busy && (done || failed);
}"""


def _opted_in(request) -> bool:
    markexpr = request.config.getoption("markexpr", default="") or ""
    return os.environ.get("REPROBUST_TEST_BROWSER") == "1" or "browser" in markexpr


def _ensure_chromium(timeout: float = 900) -> None:
    """Install Debian's chromium with apt-get when it is missing (root only); skip with the reason."""
    if CHROMIUM.exists():
        return
    if os.geteuid() != 0:
        pytest.skip(f"{CHROMIUM} is not installed and installing it needs root (running as uid {os.geteuid()})")
    if shutil.which("apt-get") is None:
        pytest.skip(f"{CHROMIUM} is not installed and there is no apt-get on this machine")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.skip(f"`{' '.join(cmd)}` did not finish within {timeout:.0f} s")
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
            pytest.skip(f"cannot install chromium: `{' '.join(cmd)}` failed (exit {proc.returncode}): {last[0]}")
    if not CHROMIUM.exists():
        pytest.skip(f"apt-get installed chromium but {CHROMIUM} does not exist")


@pytest.fixture(scope="module")
def browser(request):
    if not _opted_in(request):
        pytest.skip("opt-in: set REPROBUST_TEST_BROWSER=1 or run `pytest -m browser` (installs Debian's "
                    "chromium as root and starts JupyterLab on localhost)")
    _ensure_chromium()
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        pytest.skip(f"playwright is not installed ({e}); it is in the `test` extra of pyproject.toml")
    with sync_playwright() as p:
        try:
            # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
            b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"])
        except PlaywrightError as e:
            pytest.skip(f"{CHROMIUM} does not start here: {str(e).splitlines()[0]}")
        yield b
        b.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(browser, tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 with a token, serving a copy of the notebooks."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(NOTEBOOKS_DIR, root / "notebooks", ignore=shutil.ignore_patterns("*.ipynb", ".*"))
    shutil.copy(REPO_ROOT / "jupytext.toml", root / "jupytext.toml")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    # as a reader's lab: no MPLBACKEND, so the kernel uses matplotlib-inline and figures render inline
    env.pop("MPLBACKEND", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "lib"), env.get("PYTHONPATH")]))
    env["REPROBUST_CACHE_DIR"] = str(root / ".cache")
    env["JUPYTER_CONFIG_DIR"] = str(root / ".jupyter")      # no user configuration leaks in
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
           f"--LabApp.workspaces_dir={root / '.workspaces'}", f"--LabApp.user_settings_dir={root / '.settings'}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    # no "get notified about Jupyter news?" pop-up over the screenshots
    news = root / ".settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false"}))
    log_path = root / "jupyterlab.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
                    pytest.fail("JupyterLab did not start: " + " | ".join(tail))
                time.sleep(0.5)
        yield {"url": f"http://127.0.0.1:{port}", "token": token, "root": root, "log": log_path}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _open_as_notebook(page, lab, name: str):
    """File browser → right-click ``<name>.py`` → Open With → Notebook (jupytext's contents manager)."""
    # a workspace of its own, reset: no tab of an earlier test is restored beside this one
    page.goto(f"{lab['url']}/lab/workspaces/{name}/tree/notebooks?reset&token={lab['token']}")
    item = page.locator(".jp-DirListing-item", has_text=f"{name}.py")
    item.wait_for(timeout=120_000)
    item.click(button="right")
    page.locator(".lm-Menu-item", has_text="Open With").hover()
    page.locator(".lm-Menu").last.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Notebook$")).click()
    page.locator(".jp-NotebookPanel .jp-CodeCell").first.wait_for(timeout=120_000)
    # a notebook without kernel metadata asks which kernel to start: accept the default
    try:
        page.locator(".jp-Dialog .jp-mod-accept").click(timeout=3_000)
    except Exception:  # noqa: BLE001 — no dialog: the kernel starts from the notebook's metadata
        pass


def _set_profile(page, value: str) -> str:
    """Replace the ``profile = ...`` line of the parameters cell by typing; return the cell's new text."""
    cell = page.locator(".jp-CodeCell").filter(has=page.locator(".cm-line", has_text=re.compile(r"^profile\s*="))).first
    line = cell.locator(".cm-line", has_text=re.compile(r"^profile\s*=")).first
    line.click()
    page.keyboard.press("Home")
    page.keyboard.press("Shift+End")
    page.keyboard.type(f'profile = "{value}"')
    page.keyboard.press("Escape")          # leave edit mode
    return cell.locator(".cm-content").inner_text()


def _run_all(page):
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-item", has_text="Run All Cells").first.click()
    page.wait_for_function(FINISHED_JS, timeout=RUN_TIMEOUT_S * 1000, polling=1000)


def _saved_notebook(page, lab, name: str, after: float):
    """Save (Ctrl+S: jupytext writes the paired .py and .ipynb) and read back the .ipynb with outputs."""
    path = lab["root"] / "notebooks" / f"{name}.ipynb"
    page.locator(".jp-NotebookPanel .jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 60
    while not (path.exists() and path.stat().st_mtime > after):
        assert time.monotonic() < deadline, f"saving {name} in JupyterLab wrote no {path.name}"
        time.sleep(0.5)
    time.sleep(1.0)   # let the write finish
    return nbformat.read(str(path), as_version=4)


def _shutdown_kernels(lab):
    """Stop the kernels this test started (JupyterLab's REST API), so the next notebook runs alone."""
    api = f"{lab['url']}/api/kernels"
    headers = {"Authorization": f"token {lab['token']}"}
    with urllib.request.urlopen(urllib.request.Request(api, headers=headers), timeout=30) as r:
        kernels = json.loads(r.read())
    for k in kernels:
        urllib.request.urlopen(urllib.request.Request(f"{api}/{k['id']}", method="DELETE", headers=headers), timeout=60)


def _errors(nb) -> list:
    return [f"cell {i}: {o.get('ename')}: {o.get('evalue')}" for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for o in c.get("outputs", []) if o.get("output_type") == "error"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_jupyterlab_on_the_smoke_profile(browser, lab, name):
    started = time.time()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        _open_as_notebook(page, lab, name)
        text = _set_profile(page, "smoke")
        # the edit took: the parameters cell now says smoke (a quick run would take minutes)
        assert re.search(r'^profile\s*=\s*"smoke"\s*$', text, re.M), text[:200]
        _run_all(page)

        # what the reader sees: no traceback, at least one figure drawn inline, the claims table
        tracebacks = [t[:300] for t in page.locator(
            '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').all_text_contents()
            if "Traceback (most recent call last)" in t]
        assert not tracebacks, tracebacks[0]
        # the lab's environment has ipywidgets: tqdm draws progress bars, not "IProgress not found"
        stderr = " ".join(page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
                          .all_text_contents())
        assert "IProgress not found" not in stderr
        images = page.locator(".jp-OutputArea .jp-RenderedImage img")
        assert images.count() >= 1, "no figure rendered inline"
        assert images.first.evaluate("img => img.naturalWidth") > 100
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for _ in range(3):   # off-screen cells are laid out only when they scroll in (content-visibility)
            images.first.scroll_into_view_if_needed()
            page.wait_for_timeout(300)
        images.first.screenshot(path=str(SCREENSHOTS / f"{name}-figure.png"))    # the figure as the reader sees it
        claims = page.locator(".jp-OutputArea table").filter(
            has=page.locator("th", has_text=re.compile(r"^verdict$")))
        assert claims.count() >= 1, "no claims table (a table with a 'verdict' column) is shown"
        claims.last.scroll_into_view_if_needed()
        shot = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000

        # the saved notebook agrees: the smoke profile, every code cell executed, no error output,
        # PNG figures and an HTML table with a verdict column among the outputs
        nb = _saved_notebook(page, lab, name, started)
    finally:
        page.close()
        _shutdown_kernels(lab)
    params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1 and re.search(r'^profile\s*=\s*"smoke"', params[0].source, re.M)
    assert not _errors(nb), _errors(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), [c.source[:60] for c in code if not c.get("execution_count")]
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert any("verdict" in "".join(o.get("data", {}).get("text/html", "")) for o in outputs)
    # and the notebook saved its figures where the smoke profile puts them (never into figures/)
    written = [p for p in (BUILD_DIR / "smoke" / name).glob("*.png") if p.stat().st_mtime >= started]
    assert written, f"no figure written into build/smoke/{name} during this run"
    index = json.loads((BUILD_DIR / "smoke" / name / "_outputs.json").read_text())
    assert any(o["kind"] == "figure" for o in index)
