"""Headless runner: execute the jupytext notebooks with papermill and publish their outputs.

``./run_all.sh`` calls ``python -m reprobust.run``. For each notebook source
``notebooks/NN_name.py`` (jupytext percent format) the runner

1. converts it to ipynb in memory (jupytext) and checks the ``-p`` overrides against the
   parameters cell (papermill only warns about unknown names; we refuse them),
2. executes it with papermill (kernel ``python3``, cwd = repository root, a per-profile cell
   timeout) writing the executed notebook to ``build/notebooks/``, and figures into a staging folder,
3. on success swaps the staging folder in as ``<output-root>/<notebook>`` — a failing notebook never
   leaves half its figures in ``figures/`` — and writes ``_run.json`` (parameters, versions, commit),
4. at the end writes ``MANIFEST.json`` (one entry per figure/table file with a content hash) and the
   gallery ``README.md`` of the output root.

A failing notebook does not stop the others; the runner reports the failing cell and exits 1.

Examples
--------
    python -m reprobust.run --list
    python -m reprobust.run --profile smoke --only 03
    python -m reprobust.run --only 01 02 -p epochs 5 --jobs 2
    python -m reprobust.run --profile full --executor slurm --cluster-config cluster.yaml
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import __version__
from .cache import atomic_write_bytes
from .context import PROFILES
from .paths import BUILD_DIR, FIGURES_DIR, NOTEBOOKS_DIR, REPO_ROOT
from .plotting import INDEX_FILE

#: Per-cell execution timeout (seconds) by profile; a hung cell fails instead of hanging CI.
CELL_TIMEOUT = {"smoke": 300, "quick": 900, "full": None}
#: Parameters every notebook must declare; the runner sets them.
COMMON_PARAMETERS = ("profile", "seed", "device", "data_dir", "cache_dir", "output_dir")
RUN_FILE = "_run.json"
PUBLISHED_SUFFIXES = (".png", ".csv", ".md")


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


def _first_heading(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


def execute(name: str, *, profile: str, parameters: dict, output_root: Path, device: str = "auto",
            data_dir=None, cache_dir=None, seed: int | None = None, timeout=None, log=print,
            notebooks_dir: Path = NOTEBOOKS_DIR) -> dict:
    """Execute one notebook; publish its outputs into ``output_root/name`` only if it succeeds.

    Returns a dict ``{"name", "ok", "seconds", "outputs", "error"}``.
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
    result = {"name": name, "ok": False, "seconds": 0.0, "outputs": 0, "error": ""}
    try:
        papermill.execute_notebook(nb, str(executed), parameters=params, kernel_name="python3",
                                   language="python", cwd=str(REPO_ROOT), progress_bar=False,
                                   execution_timeout=timeout if timeout is not None else CELL_TIMEOUT[profile])
    except PapermillExecutionError as e:
        result["error"] = f"cell {e.cell_index} (execution count {e.exec_count}) raised {e.ename}: {e.evalue}"
    except Exception as e:  # noqa: BLE001 — kernel died, timeout, …: report and go on
        result["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    finally:
        if env_backup is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = env_backup
    result["seconds"] = round(time.perf_counter() - t0, 1)
    index = staging / INDEX_FILE
    if not result["error"]:
        outputs = json.loads(index.read_text()) if index.exists() else []
        if not any(o["kind"] == "figure" for o in outputs):
            result["error"] = "the notebook ran but saved no figure (expected at least one)"
        result["outputs"] = len(outputs)
    if result["error"]:
        log(f"  partially executed notebook: {executed.relative_to(REPO_ROOT) if executed.is_relative_to(REPO_ROOT) else executed}")
        shutil.rmtree(staging, ignore_errors=True)
        return result
    run_info = {"notebook": name, "title": _first_heading(nb), "profile": profile,
                "parameters": {k: _literal(v) for k, v in declared.items() if k not in ("output_dir", "cache_dir")},
                "package_version": __version__, "git_commit": code_commit()}
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
    sections = []
    for folder in sorted(p for p in output_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        run_file, index_file = folder / RUN_FILE, folder / INDEX_FILE
        if not (run_file.exists() and index_file.exists()):
            continue
        run = json.loads(run_file.read_text())
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
                claims = (folder / f"{out['name']}.md").read_text()
            else:
                lines += [f"Table **{out['name']}** — {out.get('caption', '')}: "
                          f"[csv]({folder.name}/{out['name']}.csv), [markdown]({folder.name}/{out['name']}.md)", ""]
        if claims:
            lines += ["### Claims", "", claims]
        sections.append("\n".join(lines))
    atomic_write_bytes(output_root / "MANIFEST.json", json.dumps(manifest, indent=1, sort_keys=True).encode())
    gallery = ["# Gallery", "",
               "Every figure and table produced by `./run_all.sh` (written by `reprobust.run`; "
               "`MANIFEST.json` lists each file with its parameters and content hash).", ""] + sections
    atomic_write_bytes(output_root / "README.md", ("\n".join(gallery).rstrip() + "\n").encode())
    return manifest


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
    p.add_argument("--no-index", action="store_true", help=argparse.SUPPRESS)
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
    except RunnerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.allow_download:
        os.environ["REPROBUST_ALLOW_DOWNLOAD"] = "1"
    output_root = Path(args.output_root) if args.output_root else (
        BUILD_DIR / "smoke-figures" if args.profile == "smoke" else FIGURES_DIR)
    if args.jobs > 1 and len(names) > 1:
        return _run_parallel(names, args, output_root)
    failures = []
    t_all = time.perf_counter()
    for i, name in enumerate(names, start=1):
        print(f"[{i}/{len(names)}] {name} ({args.profile}) ...", flush=True)
        try:
            mine = {k: v for k, v in params.items() if k in declared.get(name, params)}
            res = execute(name, profile=args.profile, parameters=mine, output_root=output_root,
                          device=args.device, data_dir=args.data_dir, cache_dir=args.cache_dir,
                          seed=args.seed, timeout=args.timeout, notebooks_dir=Path(args.notebooks_dir))
        except RunnerError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if res["ok"]:
            print(f"[{i}/{len(names)}] {name}: ok in {res['seconds']} s, {res['outputs']} outputs", flush=True)
        else:
            failures.append(name)
            print(f"[{i}/{len(names)}] {name}: FAILED after {res['seconds']} s: {res['error']}", flush=True)
    if not args.no_index and output_root.exists():
        write_manifest(output_root)
    print(f"done in {time.perf_counter() - t_all:.1f} s: {len(names) - len(failures)} ok, "
          f"{len(failures)} failed{' (' + ', '.join(failures) + ')' if failures else ''}")
    return 1 if failures else 0


def _run_parallel(names, args, output_root) -> int:
    """One OS process per notebook (never several kernels from one process: ZMQ port races)."""
    base = [sys.executable, "-m", "reprobust.run", "--profile", args.profile, "--device", args.device,
            "--output-root", str(output_root), "--no-index", "--notebooks-dir", args.notebooks_dir]
    for flag, val in (("--data-dir", args.data_dir), ("--cache-dir", args.cache_dir), ("--seed", args.seed),
                      ("--timeout", args.timeout)):
        if val is not None:
            base += [flag, str(val)]
    declared = {n: notebook_parameters(read_notebook(n, Path(args.notebooks_dir))) for n in names}
    t_all = time.perf_counter()
    pending, running, codes = list(names), {}, {}
    while pending or running:
        while pending and len(running) < args.jobs:
            n = pending.pop(0)
            overrides = [a for k, v in args.parameter if k in declared[n] for a in ("-p", k, v)]
            running[n] = subprocess.Popen(base + overrides + ["--only", n])
        for n, proc in list(running.items()):
            if proc.poll() is not None:
                codes[n] = proc.returncode
                del running[n]
        time.sleep(0.5)
    if output_root.exists():
        write_manifest(output_root)
    failed = [n for n, c in codes.items() if c != 0]
    print(f"done in {time.perf_counter() - t_all:.1f} s: {len(names) - len(failed)} ok, {len(failed)} failed{' (' + ', '.join(failed) + ')' if failed else ''}")
    return 2 if any(c == 2 for c in codes.values()) else (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
