"""Headless runner: execute the jupytext notebooks with papermill and publish their outputs.

``./run_all.sh`` calls ``python -m reprobust.run``. For each notebook source
``notebooks/NN_name.py`` (jupytext percent format) the runner

1. converts it to ipynb in memory (jupytext) and checks the ``-p`` overrides against the
   parameters cell (papermill only warns about unknown names; we refuse them),
2. executes it with papermill (kernel ``python3``, cwd = repository root, a per-profile cell
   timeout) writing the executed notebook to ``build/notebooks/``, and figures into a staging folder,
3. on success swaps the staging folder in as ``<output-root>/<notebook>`` — a failing notebook never
   leaves half its figures in ``figures/`` — and writes ``_run.json`` (parameters, versions, commit),
4. at the end writes ``MANIFEST.json`` (one entry per figure/table file with a content hash, and the
   platform: CPU, torch threads, BLAS, library versions) and the gallery ``README.md`` of the output
   root, and prints a summary table (wall time, figures, verdicts by kind per notebook).

While notebooks run, one status line per notebook shows its current cell and elapsed time (redrawn in
place on a terminal; in a log, a line every 30 s). Kernels talk to the runner over Unix sockets (IPC),
not TCP. ``--compare-to-committed`` reruns a profile into ``build/compare/<profile>`` and reports, per
notebook, how far every committed number moved and which verdicts changed (:mod:`reprobust.compare`).

A failing notebook does not stop the others; the runner reports the failing cell and exits 1.

Examples
--------
    python -m reprobust.run --list
    python -m reprobust.run --profile smoke --only 03
    python -m reprobust.run --only 01 02 -p epochs 5 --jobs 2
    python -m reprobust.run --profile full --executor slurm --cluster-config cluster.yaml
    python -m reprobust.run --compare-to-committed
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import __version__
from .cache import atomic_write_bytes
from .context import PROFILES
from .paths import BUILD_DIR, FIGURES_DIR, NOTEBOOKS_DIR, REPO_ROOT
from .plotting import INDEX_FILE

#: Per-cell execution timeout (seconds) by profile; a hung cell fails instead of hanging CI.
CELL_TIMEOUT = {"smoke": 300, "quick": 4 * 3600, "full": None}  # quick: 01 trains 1,100 models in one cell (≈ 2 h cold)
#: Parameters every notebook must declare; the runner sets them.
COMMON_PARAMETERS = ("profile", "seed", "device", "data_dir", "cache_dir", "output_dir")
RUN_FILE = "_run.json"
PUBLISHED_SUFFIXES = (".png", ".csv", ".md")
#: Verdicts in the order the summary lists them (any other value found in a claims table follows).
VERDICT_ORDER = ("supported", "contradicted", "inconclusive", "not testable here", "not supported")
#: Libraries whose versions can change a number (recorded in the platform of each run).
NUMERIC_LIBRARIES = ("torch", "torchvision", "numpy", "scipy", "scikit-learn", "pandas", "matplotlib",
                     "umap-learn", "cma", "threadpoolctl", "papermill", "ipykernel")


class RunnerError(ValueError):
    """Bad runner input (reported as one line, exit status 2)."""


def available_notebooks(folder: Path = NOTEBOOKS_DIR) -> list:
    """Notebook names (``NN_name``) found in ``notebooks/``, sorted."""
    return sorted(p.stem for p in Path(folder).glob("[0-9][0-9]_*.py"))


def resolve_notebooks(selection, folder: Path = NOTEBOOKS_DIR) -> list:
    """Map ``["03", "01_raw_zero_shot"]`` to full notebook names; one-line error for unknown ones."""
    names = available_notebooks(folder)
    if not selection:
        return names
    chosen = []
    for s in selection:
        hits = [n for n in names if n == s or n.split("_", 1)[0] == s]
        if not hits:
            raise RunnerError(f"unknown notebook {s!r}; valid choices: {', '.join(names) or '(none found)'}")
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def parse_value(text: str):
    """``-p`` values are YAML scalars/lists: ``5`` → int, ``0.1`` → float, ``[1,2]`` → list, ``null``."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _literal(source):
    """A parameter default as papermill reports it (source text such as ``None`` or ``[1, 2]``) → value."""
    import ast

    try:
        return ast.literal_eval(source) if isinstance(source, str) else source
    except (ValueError, SyntaxError):
        return source


def read_notebook(name: str, folder: Path = NOTEBOOKS_DIR):
    """The jupytext source as an ipynb NotebookNode with a python3 kernelspec."""
    import jupytext

    nb = jupytext.read(Path(folder) / f"{name}.py")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata.setdefault("language_info", {"name": "python"})
    return nb


def notebook_parameters(nb) -> dict:
    """``{name: default (as source text)}`` of the cell tagged ``parameters`` (papermill's inspection)."""
    import nbformat
    import papermill

    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    tmp = BUILD_DIR / f".inspect-{os.getpid()}.ipynb"
    try:
        nbformat.write(nb, str(tmp))
        return {name: p["default"] for name, p in papermill.inspect_notebook(str(tmp)).items()}
    finally:
        tmp.unlink(missing_ok=True)


def code_commit() -> str:
    """Last commit touching the code that makes the figures (+ ``-dirty`` if it has local changes).

    Figures committed afterwards do not change it, so a rerun leaves ``MANIFEST.json`` unchanged.
    """
    paths = ["lib", "notebooks", "pyproject.toml"]
    try:
        head = subprocess.run(["git", "log", "-1", "--format=%H", "--", *paths], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=20).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *paths], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "uncommitted") + ("-dirty" if dirty else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def platform_info() -> dict:
    """What, besides the code and the seed, decides the last bits of a CPU result.

    Returns a dict with the CPU model and core count, the torch threads the notebooks use
    (``$REPROBUST_THREADS``, see :func:`reprobust.context.default_threads`), torch's CPU capability and
    BLAS, the BLAS libraries NumPy/SciPy loaded (threadpoolctl: implementation, version, the kernel
    architecture it dispatched to, threads) and the versions of the numerical libraries. Nothing
    machine-specific beyond that (no host name, no memory size), so a rerun on the same platform
    writes the same ``MANIFEST.json``.

    Example
    -------
    >>> platform_info()["torch_threads"]          # doctest: +SKIP
    1
    """
    import importlib.metadata

    import scipy.linalg  # noqa: F401 — loads SciPy's BLAS, so that threadpoolctl sees it
    import torch
    from threadpoolctl import threadpool_info

    from .context import default_threads

    config = torch.__config__.show()
    torch_blas = next((part.split("=", 1)[1] for part in config.replace(",", " ").split()
                       if part.startswith("BLAS_INFO=")), "unknown")
    blas = sorted(({k: pool.get(k) for k in ("internal_api", "version", "architecture", "threading_layer",
                                              "num_threads")}
                   for pool in threadpool_info() if pool.get("user_api") == "blas"),
                  key=lambda d: json.dumps(d, sort_keys=True))
    unique_blas = [b for i, b in enumerate(blas) if b not in blas[:i]]
    versions = {}
    for lib in NUMERIC_LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = None
    return {"system": platform.system(), "machine": platform.machine(), "cpu_model": _cpu_model(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "torch_threads": default_threads(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_blas": torch_blas, "blas": unique_blas, "libraries": versions}


class ProgressBoard:
    """One status line per running notebook: its current cell and elapsed time.

    On a terminal the lines are redrawn in place (once a second); in a log (not a terminal) a
    notebook's line is printed when it starts and then at most every ``heartbeat_s`` seconds, so a
    CI log gets no per-cell noise. Finished notebooks get one permanent line each (:meth:`finish`).

    Parameters
    ----------
    stream : text stream to write to (default ``sys.stdout``)
    interactive : bool, optional; redraw in place (default: whether ``stream`` is a terminal)
    heartbeat_s : float, seconds between two log lines of the same notebook when not interactive
    """

    def __init__(self, stream=None, *, interactive: bool | None = None, heartbeat_s: float = 30.0):
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.heartbeat_s = heartbeat_s
        self.rows = {}          # name -> {"label", "cell", "cells", "t0", "printed"}
        self.drawn = 0          # live lines currently on screen (interactive)
        self.lock = threading.Lock()

    def start(self, name: str, label: str):
        with self.lock:
            self.rows[name] = {"label": label, "cell": None, "cells": None, "t0": time.perf_counter(),
                               "printed": None}
            self._refresh()

    def cell(self, name: str, index: int, total: int):
        """Notebook ``name`` started cell ``index`` (0-based, as papermill counts) of ``total``."""
        with self.lock:
            if name in self.rows:
                self.rows[name].update(cell=index, cells=total)

    def finish(self, name: str, message: str):
        """Notebook ``name`` is done: drop its live line, print ``message`` as a permanent one."""
        with self.lock:
            self.rows.pop(name, None)
            self._print(message)

    def message(self, text: str):
        """A permanent line (printed above the live ones)."""
        with self.lock:
            self._print(text)

    def _print(self, text: str):
        self._clear()
        print(text, file=self.stream, flush=True)
        self._draw()

    def tick(self):
        with self.lock:
            self._refresh()

    def _line(self, row) -> str:
        where = f"cell {row['cell'] + 1}/{row['cells']}" if row["cell"] is not None else "starting kernel"
        return f"{row['label']}: {where}, {time.perf_counter() - row['t0']:.0f} s"

    def _clear(self):
        if self.interactive and self.drawn:
            self.stream.write(f"\x1b[{self.drawn}F\x1b[J")   # cursor up over the live lines, erase below
            self.drawn = 0

    def _draw(self):
        if self.interactive:
            for row in self.rows.values():
                self.stream.write(self._line(row) + "\n")
            self.drawn = len(self.rows)
            self.stream.flush()

    def _refresh(self):
        if self.interactive:
            self._clear()
            self._draw()
            return
        now = time.perf_counter()
        for row in self.rows.values():
            if row["printed"] is None or now - row["printed"] >= self.heartbeat_s:
                print(self._line(row), file=self.stream, flush=True)
                row["printed"] = now


def _register_engine() -> str:
    """Register (once) a papermill engine that reports each cell start to a callback ``on_cell``."""
    from papermill.engines import NBClientEngine, papermill_engines

    name = "reprobust"
    if name not in papermill_engines._engines:

        class ReportingEngine(NBClientEngine):
            @classmethod
            def execute_managed_notebook(cls, nb_man, kernel_name, on_cell=None, **kwargs):
                if on_cell is not None:
                    cell_start = nb_man.cell_start

                    def reporting_cell_start(cell, cell_index=None, **kw):
                        on_cell(cell_index, len(nb_man.nb.cells))
                        return cell_start(cell, cell_index, **kw)

                    nb_man.cell_start = reporting_cell_start
                return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

        papermill_engines.register(name, ReportingEngine)
    return name


def _kernel_config(folder: Path):
    """Kernel-manager settings: Unix-socket (IPC) transport in ``folder`` where the OS has it.

    Over TCP, ipykernel warns on every start that the traffic is unencrypted; a reader cannot act on
    that. IPC sockets in a private temporary folder are not reachable from the network at all (and
    need no free ports, so parallel runs cannot race for them).
    """
    from traitlets.config import Config

    if os.name != "posix":
        return Config()
    return Config({"KernelManager": {"transport": "ipc", "ip": str(folder / "ipc"),
                                     "connection_file": str(folder / "kernel.json")}})


def _first_heading(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


def execute(name: str, *, profile: str, parameters: dict, output_root: Path, device: str = "auto",
            data_dir=None, cache_dir=None, seed: int | None = None, timeout=None, log=print,
            notebooks_dir: Path = NOTEBOOKS_DIR, on_cell=None) -> dict:
    """Execute one notebook; publish its outputs into ``output_root/name`` only if it succeeds.

    ``on_cell(index, total)`` is called as each cell starts (for progress lines).
    Returns a dict ``{"name", "ok", "seconds", "outputs", "figures", "error"}``.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    nb = read_notebook(name, notebooks_dir)
    declared = notebook_parameters(nb)
    missing = [p for p in COMMON_PARAMETERS if p not in declared]
    if missing:
        raise RunnerError(f"notebook {name} does not declare the common parameters {missing}")
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise RunnerError(f"unknown parameter {unknown[0]!r} for notebook {name}; valid choices: "
                          + ", ".join(sorted(set(declared) - set(COMMON_PARAMETERS))))
    output_root = Path(output_root)
    staging = BUILD_DIR / "staging" / f"{name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    params = dict(parameters)
    params.update(profile=profile, device=device, output_dir=str(staging),
                  data_dir=None if data_dir is None else str(data_dir),
                  cache_dir=None if cache_dir is None else str(cache_dir))
    if seed is not None:
        params["seed"] = seed
    executed = BUILD_DIR / "notebooks" / f"{name}.ipynb"
    executed.parent.mkdir(parents=True, exist_ok=True)
    env_backup = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "Agg"
    # The "python3" kernelspec runs the first `python` on PATH: make it this interpreter.
    bindir = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bindir:
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    t0 = time.perf_counter()
    result = {"name": name, "ok": False, "seconds": 0.0, "outputs": 0, "figures": 0, "error": ""}
    kernel_dir = Path(tempfile.mkdtemp(prefix="reprobust-kernel-"))
    try:
        papermill.execute_notebook(nb, str(executed), parameters=params, kernel_name="python3",
                                   language="python", cwd=str(REPO_ROOT), progress_bar=False,
                                   engine_name=_register_engine(), on_cell=on_cell,
                                   config=_kernel_config(kernel_dir),
                                   execution_timeout=timeout if timeout is not None else CELL_TIMEOUT[profile])
    except PapermillExecutionError as e:
        result["error"] = f"cell {e.cell_index} (execution count {e.exec_count}) raised {e.ename}: {e.evalue}"
    except Exception as e:  # noqa: BLE001 — kernel died, timeout, …: report and go on
        result["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    finally:
        shutil.rmtree(kernel_dir, ignore_errors=True)
        if env_backup is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = env_backup
    result["seconds"] = round(time.perf_counter() - t0, 1)
    index = staging / INDEX_FILE
    if not result["error"]:
        outputs = json.loads(index.read_text()) if index.exists() else []
        result["figures"] = sum(o["kind"] == "figure" for o in outputs)
        if not result["figures"]:
            result["error"] = "the notebook ran but saved no figure (expected at least one)"
        result["outputs"] = len(outputs)
    if result["error"]:
        log(f"  partially executed notebook: {executed.relative_to(REPO_ROOT) if executed.is_relative_to(REPO_ROOT) else executed}")
        shutil.rmtree(staging, ignore_errors=True)
        return result
    run_info = {"notebook": name, "title": _first_heading(nb), "profile": profile,
                "parameters": {k: _literal(v) for k, v in declared.items() if k not in ("output_dir", "cache_dir")},
                "package_version": __version__, "git_commit": code_commit(), "platform": platform_info()}
    for k, v in params.items():
        # where the cache and the staging folder live does not change a result: leave them out, so the
        # manifest is the same on every machine
        if k not in ("output_dir", "cache_dir"):
            run_info["parameters"][k] = v
    atomic_write_bytes(staging / RUN_FILE, json.dumps(run_info, indent=1, sort_keys=True).encode())
    _publish(staging, output_root / name)
    result["ok"] = True
    return result


def _publish(staging: Path, target: Path):
    """Swap ``staging`` in as ``target`` (two renames; the old folder is removed afterwards)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    trash = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, trash)
    shutil.move(str(staging), str(target))
    shutil.rmtree(trash, ignore_errors=True)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(output_root: Path = FIGURES_DIR) -> dict:
    """Write ``MANIFEST.json`` and the gallery ``README.md`` for every published notebook folder."""
    output_root = Path(output_root)
    manifest = {"files": []}
    sections, platforms = [], {}
    for folder in sorted(p for p in output_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        run_file, index_file = folder / RUN_FILE, folder / INDEX_FILE
        if not (run_file.exists() and index_file.exists()):
            continue
        run = json.loads(run_file.read_text())
        platforms[folder.name] = run.get("platform")
        outputs = json.loads(index_file.read_text())
        lines = [f"## {folder.name}" + (f" — {run['title']}" if run.get("title") else ""), "",
                 f"Profile `{run['profile']}`, seed {run['parameters'].get('seed')}, "
                 f"package {run['package_version']}, code commit `{run['git_commit'][:12]}`.", ""]
        claims = None
        for out in outputs:
            for f in out["files"]:
                path = folder / f
                if not path.exists():
                    continue
                manifest["files"].append({
                    "file": f"{folder.name}/{f}", "notebook": run["notebook"], "kind": out["kind"],
                    "profile": run["profile"], "seed": run["parameters"].get("seed"),
                    "parameters": run["parameters"], "package_version": run["package_version"],
                    "git_commit": run["git_commit"], "sha256": _sha256(path)})
            if out["kind"] == "figure":
                lines += [f"**{out['name']}** — {out.get('caption', '')}", "",
                          f"![{out['name']}]({folder.name}/{out['name']}.png)", ""]
            elif out["name"] == "claims":
                claims = gallery_claims(folder / "claims.csv")
            else:
                lines += [f"Table **{out['name']}** — {out.get('caption', '')}: "
                          f"[csv]({folder.name}/{out['name']}.csv), [markdown]({folder.name}/{out['name']}.md)", ""]
        if claims:
            lines += ["### Claims", "", claims,
                      f"Full table (rule, expected direction, p-values, notes): [csv]({folder.name}/claims.csv), "
                      f"[markdown]({folder.name}/claims.md)", ""]
        sections.append("\n".join(lines))
    manifest.update(_manifest_platform(platforms))
    atomic_write_bytes(output_root / "MANIFEST.json", json.dumps(manifest, indent=1, sort_keys=True).encode())
    gallery = ["# Gallery", "",
               "Every figure and table produced by `./run_all.sh` (written by `reprobust.run`; "
               "`MANIFEST.json` lists each file with its parameters and content hash).", ""] + sections
    atomic_write_bytes(output_root / "README.md", ("\n".join(gallery).rstrip() + "\n").encode())
    return manifest


def _manifest_platform(platforms: dict) -> dict:
    """``{"platform": the one most notebooks ran on}``, plus ``"platform_differs": {notebook: platform}``
    for notebooks published from another platform (e.g. rerun alone on another machine)."""
    known = {n: p for n, p in platforms.items() if p is not None}
    if not known:
        return {"platform": None}
    encoded = collections.Counter(json.dumps(p, sort_keys=True) for p in known.values())
    common = json.loads(encoded.most_common(1)[0][0])
    out = {"platform": common}
    differs = {n: p for n, p in platforms.items() if p != common}
    if differs:
        out["platform_differs"] = differs
    return out


def gallery_claims(claims_csv: Path) -> str:
    """The claims table for the gallery: claim, statistic, estimate with CI, verdict and stability.

    Rows whose ``stability`` (share of leave-one-replicate-out subsets giving the same verdict) is
    below 1.0 are marked **fragile**. Works with whichever of the columns the table has (``id``,
    ``kind``, ``estimate`` or the older ``value``, ``stability``, ...).
    """
    import pandas as pd

    from .plotting import markdown_table

    df = pd.read_csv(claims_csv, keep_default_na=True)
    est = "estimate" if "estimate" in df.columns else ("value" if "value" in df.columns else None)
    out = pd.DataFrame(index=df.index)
    for col in ("id", "kind", "claim", "statistic"):
        if col in df.columns:
            out[col] = df[col]
    if est:
        def interval(r):
            text = "" if pd.isna(r[est]) else f"{r[est]:.3g}"
            if "ci_low" in df.columns and "ci_high" in df.columns and not (pd.isna(r["ci_low"]) or pd.isna(r["ci_high"])):
                text += f" [{r['ci_low']:.3g}, {r['ci_high']:.3g}]"
            return text
        out["estimate [95% CI]"] = df.apply(interval, axis=1)
    for col in ("n", "verdict"):
        if col in df.columns:
            out[col] = df[col]
    if "stability" in df.columns:
        stab = pd.to_numeric(df["stability"], errors="coerce")
        out["stability"] = [("" if pd.isna(s) else f"{s:.2f}" + (" **fragile**" if s < 1.0 else "")) for s in stab]
        fragile = int((stab < 1.0).sum())
        note = (f"\n\n{fragile} of {len(df)} verdicts are **fragile**: leaving one replicate out changes them "
                "(stability < 1.0)." if fragile else "\n\nEvery verdict is stable under leaving one replicate out.")
    else:
        note = ""
    return markdown_table(out) + note + "\n"


def _parser():
    p = argparse.ArgumentParser(prog="python -m reprobust.run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="quick", help="smoke | quick (default) | full")
    p.add_argument("--only", nargs="+", metavar="NB", help="notebooks to run, e.g. 03 or 01_raw_zero_shot")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="override a notebook parameter (YAML value); repeatable")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default="auto", help="cpu | cuda | auto")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--output-root", default=None,
                   help="where figures go (default figures/, or build/smoke-figures for --profile smoke)")
    p.add_argument("--jobs", type=int, default=None,
                   help="notebooks in parallel, as separate OS processes (default: the number of CPU cores; "
                        "each notebook uses REPROBUST_THREADS torch threads, default 1)")
    p.add_argument("--timeout", type=float, default=None, help="per-cell timeout in seconds")
    p.add_argument("--allow-download", action="store_true", help="let torchvision download data sets")
    p.add_argument("--executor", default=None,
                   help="where notebooks run their grids (train_grid/run_grid): inline (default) | processes | "
                        "slurm; exported as $REPROBUST_EXECUTOR")
    p.add_argument("--cluster-config", default=None, metavar="PATH",
                   help="SLURM settings for --executor slurm (see cluster.example.yaml); "
                        "exported as $REPROBUST_CLUSTER_CONFIG")
    p.add_argument("--list", action="store_true", help="list the notebooks and their parameters")
    p.add_argument("--plan", action="store_true",
                   help="with --profile full: print each notebook's models, evaluations, cache size and "
                        "estimated GPU-hours, and run nothing (reprobust.plan)")
    p.add_argument("--plan-measure", action="store_true",
                   help="with --plan: time each model on --device instead of the FLOP reference (default on CUDA)")
    p.add_argument("--compare-to-committed", action="store_true",
                   help="rerun the profile into build/compare/<profile> (or --output-root) and report, per "
                        "notebook, the largest relative difference of the committed numbers (figures/*/*.csv) "
                        "and every verdict that changed")
    p.add_argument("--committed-dir", default=str(FIGURES_DIR), help=argparse.SUPPRESS)
    p.add_argument("--no-index", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--report-file", default=None, help=argparse.SUPPRESS)
    p.add_argument("--notebooks-dir", default=str(NOTEBOOKS_DIR), help=argparse.SUPPRESS)
    return p


def _configure_dispatch(args) -> None:
    """Validate ``--executor``/``--cluster-config`` and export them for the notebooks' kernels.

    Notebooks call :func:`reprobust.dispatch.train_grid`/``run_grid``, whose default back-end is read
    from these variables; with ``slurm`` each grid is submitted as a job array and waited for (with a
    progress line) before the notebook goes on to aggregate and plot.
    """
    from . import dispatch

    try:
        if args.executor is not None:
            dispatch.resolve_executor(args.executor)
        cluster_config = os.path.abspath(args.cluster_config) if args.cluster_config else None
        if cluster_config is not None or args.executor == "slurm":
            cfg = dispatch.load_cluster_config(cluster_config)
            if args.executor == "slurm" and not dispatch.local_paths_allowed(cfg):
                dispatch.check_shared_paths(args.cache_dir, cfg.get("job_folder"))
    except ValueError as e:
        raise RunnerError(str(e)) from None
    if args.executor is not None:
        os.environ[dispatch.ENV_EXECUTOR] = args.executor
    if cluster_config is not None:
        os.environ[dispatch.ENV_CLUSTER_CONFIG] = cluster_config


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.profile not in PROFILES:
            raise RunnerError(f"unknown profile {args.profile!r}; valid choices: {', '.join(PROFILES)}")
        if args.device not in ("auto", "cpu", "cuda"):
            raise RunnerError(f"unknown device {args.device!r}; valid choices: auto, cpu, cuda")
        if args.jobs is None:
            args.jobs = max(1, os.cpu_count() or 1)
        if args.jobs < 1:
            raise RunnerError(f"--jobs={args.jobs} is out of range; valid range: [1, inf]")
        if args.data_dir is not None and not Path(args.data_dir).is_dir():
            raise RunnerError(f"--data-dir {args.data_dir!r} does not exist; create it or point to your data")
        _configure_dispatch(args)
        names = resolve_notebooks(args.only, Path(args.notebooks_dir))
        if args.plan:  # reprobust.plan: the full profile's grids, costed, nothing run
            from .plan import print_plan

            overrides = {k: parse_value(v) for k, v in args.parameter}
            return print_plan(names, profile=args.profile, overrides=overrides, device=args.device,
                              measure=True if args.plan_measure else None)
        if args.list:
            for n in names:
                params = notebook_parameters(read_notebook(n, Path(args.notebooks_dir)))
                print(n + ": " + ", ".join(f"{k}={v}" for k, v in params.items()))
            return 0
        params = {k: parse_value(v) for k, v in args.parameter}
        declared = {n: notebook_parameters(read_notebook(n, Path(args.notebooks_dir))) for n in names} if params else {}
        known = set().union(*declared.values()) - set(COMMON_PARAMETERS) if params else set()
        for k in params:
            if k not in known:
                where = f"notebook {names[0]}" if len(names) == 1 else "the selected notebooks"
                raise RunnerError(f"unknown parameter {k!r} for {where}; valid choices: {', '.join(sorted(known))}")
        committed = Path(args.committed_dir)
        if args.compare_to_committed:
            from . import compare

            try:
                compare.check_reference(committed, args.profile, names)
            except ValueError as e:
                raise RunnerError(str(e)) from None
    except RunnerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.allow_download:
        os.environ["REPROBUST_ALLOW_DOWNLOAD"] = "1"
    if args.output_root:
        output_root = Path(args.output_root)
    elif args.compare_to_committed:
        output_root = BUILD_DIR / "compare" / args.profile
    else:
        output_root = BUILD_DIR / "smoke-figures" if args.profile == "smoke" else FIGURES_DIR
    if args.report_file:
        return _run_one_reporting(names[0], params, args, output_root)
    t_all = time.perf_counter()
    board = ProgressBoard()
    if args.jobs > 1 and len(names) > 1:
        results = _run_parallel(names, args, output_root, board)
    else:
        results = _run_sequential(names, params, declared, args, output_root, board)
    if isinstance(results, int):
        return results
    if not args.no_index and output_root.exists():
        write_manifest(output_root)
    print(format_summary(summarize(results, output_root), args.profile, output_root))
    if args.compare_to_committed:
        from . import compare

        ran = [r["name"] for r in results if r["ok"]]
        report = compare.compare_folders(committed, output_root, ran)
        atomic_write_bytes(output_root / "COMPARISON.json", json.dumps(report, indent=1, sort_keys=True).encode())
        print(compare.format_report(report, _shown(committed), _shown(output_root)))
    failures = [r["name"] for r in results if not r["ok"]]
    print(f"done in {time.perf_counter() - t_all:.1f} s: {len(names) - len(failures)} ok, "
          f"{len(failures)} failed{' (' + ', '.join(failures) + ')' if failures else ''}")
    return 1 if failures else 0


def _finish_line(i: int, total: int, res: dict) -> str:
    if res["ok"]:
        return f"[{i}/{total}] {res['name']}: ok in {res['seconds']} s, {res['outputs']} outputs"
    return f"[{i}/{total}] {res['name']}: FAILED after {res['seconds']} s: {res['error']}"


def _run_sequential(names, params, declared, args, output_root, board: ProgressBoard):
    """Execute the notebooks one after the other in this process; list of result dicts (or exit code 2)."""
    results = []
    stop = threading.Event()
    ticker = threading.Thread(target=lambda: [board.tick() for _ in iter(lambda: stop.wait(1.0), True)],
                              daemon=True)
    ticker.start()
    try:
        for i, name in enumerate(names, start=1):
            board.start(name, f"[{i}/{len(names)}] {name} ({args.profile})")
            try:
                mine = {k: v for k, v in params.items() if k in declared.get(name, params)}
                res = execute(name, profile=args.profile, parameters=mine, output_root=output_root,
                              device=args.device, data_dir=args.data_dir, cache_dir=args.cache_dir,
                              seed=args.seed, timeout=args.timeout, notebooks_dir=Path(args.notebooks_dir),
                              on_cell=lambda index, total, name=name: board.cell(name, index, total),
                              log=board.message)
            except RunnerError as e:
                board.finish(name, f"[{i}/{len(names)}] {name}: not run")
                print(f"error: {e}", file=sys.stderr)
                return 2
            board.finish(name, _finish_line(i, len(names), res))
            results.append(res)
    finally:
        stop.set()
        ticker.join()
    return results


def _run_one_reporting(name, params, args, output_root) -> int:
    """Child mode of :func:`_run_parallel`: run one notebook, reporting progress and result in a file."""
    report = Path(args.report_file)

    def write(state: dict):
        atomic_write_bytes(report, json.dumps(state).encode())

    try:
        res = execute(name, profile=args.profile, parameters=params, output_root=output_root,
                      device=args.device, data_dir=args.data_dir, cache_dir=args.cache_dir, seed=args.seed,
                      timeout=args.timeout, notebooks_dir=Path(args.notebooks_dir),
                      on_cell=lambda index, total: write({"cell": index, "cells": total}))
    except RunnerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write({"result": res})
    print(_finish_line(1, 1, res))
    return 0 if res["ok"] else 1


def _run_parallel(names, args, output_root, board: ProgressBoard):
    """One OS process per notebook (never several kernels from one process: ZMQ port races).

    Each child reports its current cell and, at the end, its result through a small JSON file; its
    own output goes to ``build/logs/<notebook>.log``. Returns the list of result dicts (or exit code 2).
    """
    base = [sys.executable, "-m", "reprobust.run", "--profile", args.profile, "--device", args.device,
            "--output-root", str(output_root), "--no-index", "--notebooks-dir", args.notebooks_dir]
    for flag, val in (("--data-dir", args.data_dir), ("--cache-dir", args.cache_dir), ("--seed", args.seed),
                      ("--timeout", args.timeout)):
        if val is not None:
            base += [flag, str(val)]
    declared = {n: notebook_parameters(read_notebook(n, Path(args.notebooks_dir))) for n in names}
    logs = BUILD_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    reports = Path(tempfile.mkdtemp(prefix="reprobust-progress-"))
    order = {n: i for i, n in enumerate(names, start=1)}
    pending, running, results, usage_error = list(names), {}, {}, None
    try:
        while pending or running:
            while pending and len(running) < args.jobs:
                n = pending.pop(0)
                overrides = [a for k, v in args.parameter if k in declared[n] for a in ("-p", k, v)]
                with open(logs / f"{n}.log", "wb") as log:
                    proc = subprocess.Popen(base + overrides + ["--only", n, "--report-file", str(reports / f"{n}.json")],
                                            stdout=log, stderr=subprocess.STDOUT)
                running[n] = proc
                board.start(n, f"[{order[n]}/{len(names)}] {n} ({args.profile})")
            for n, proc in list(running.items()):
                state = _read_report(reports / f"{n}.json")
                if "cell" in state:
                    board.cell(n, state["cell"], state["cells"])
                if proc.poll() is None:
                    continue
                del running[n]
                log_path = logs / f"{n}.log"
                res = state.get("result")
                if res is None:
                    text = log_path.read_text(errors="replace").strip().splitlines()
                    errors = [line for line in text if line.startswith("error: ")]
                    if proc.returncode == 2 and errors:
                        usage_error = errors[-1]
                    res = {"name": n, "ok": False, "seconds": 0.0, "outputs": 0, "figures": 0,
                           "error": f"the runner process exited with status {proc.returncode} "
                                    f"(log: {log_path.relative_to(REPO_ROOT) if log_path.is_relative_to(REPO_ROOT) else log_path})"}
                elif not res["ok"]:
                    executed = BUILD_DIR / "notebooks" / f"{n}.ipynb"
                    res["error"] += f" (partially executed notebook: {executed.relative_to(REPO_ROOT) if executed.is_relative_to(REPO_ROOT) else executed})"
                results[n] = res
                board.finish(n, _finish_line(order[n], len(names), res))
            board.tick()
            time.sleep(0.5)
    finally:
        for proc in running.values():
            proc.terminate()
        shutil.rmtree(reports, ignore_errors=True)
    if usage_error:
        print(usage_error, file=sys.stderr)
        return 2
    return [results[n] for n in names]


def _read_report(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def count_verdicts(claims_csv: Path) -> dict:
    """``{kind: Counter(verdict)}`` of a claims table; kind ``""`` when the table has no ``kind`` column.

    Counts whatever values the ``verdict`` column holds (the vocabulary is not fixed here).

    Example
    -------
    >>> count_verdicts(Path("figures/05_feature_maps/claims.csv"))     # doctest: +SKIP
    {'claim': Counter({'supported': 3, 'inconclusive': 2}), 'check': Counter({'supported': 2})}
    """
    import pandas as pd

    df = pd.read_csv(claims_csv, dtype=str, keep_default_na=False)
    if "verdict" not in df.columns:
        return {}
    kinds = df["kind"] if "kind" in df.columns else pd.Series([""] * len(df), index=df.index)
    counts = {}
    for kind, verdict in zip(kinds, df["verdict"]):
        counts.setdefault(kind, collections.Counter())[verdict] += 1
    return counts


def _verdict_text(counts: dict) -> str:
    def one(counter):
        keys = [v for v in VERDICT_ORDER if v in counter] + sorted(set(counter) - set(VERDICT_ORDER))
        return ", ".join(f"{counter[v]} {v}" for v in keys)

    if not counts:
        return "-"
    return "; ".join((f"{kind}: " if kind else "") + one(c) for kind, c in counts.items())


def summarize(results: list, output_root: Path) -> list:
    """One summary row per notebook: ``name``, ``status``, ``seconds``, ``figures``, ``verdicts``
    (``{kind: Counter}`` read from the published ``claims.csv``; empty for a failed notebook)."""
    rows = []
    for res in results:
        claims = Path(output_root) / res["name"] / "claims.csv"
        rows.append({"name": res["name"], "status": "ok" if res["ok"] else "FAILED", "seconds": res["seconds"],
                     "figures": res.get("figures", 0) if res["ok"] else None,
                     "verdicts": count_verdicts(claims) if res["ok"] and claims.exists() else {}})
    return rows


def _shown(path: Path):
    """``path`` relative to the repository when it lies inside it (shorter lines for the reader)."""
    path = Path(path).absolute()
    return path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path


def format_summary(rows: list, profile: str, output_root: Path) -> str:
    """The end-of-run table: notebook, status, wall time, figures written, verdicts (by kind)."""
    where = _shown(output_root)
    header = ("notebook", "status", "wall", "figures", "verdicts")
    body = [(r["name"], r["status"], f"{r['seconds']:.1f} s", "-" if r["figures"] is None else str(r["figures"]),
             _verdict_text(r["verdicts"])) for r in rows]
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(4)]
    lines = [f"summary ({profile} profile, outputs in {where}/):"]
    for cells in [header, *body]:
        lines.append("  " + "  ".join(c.ljust(w) if i != 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
                     + "  " + cells[4])
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
