"""Compare a rerun's result folders with the committed ones: what holds on this machine.

CPU results are reproducible byte for byte only on the same platform (CPU, BLAS, thread count,
library versions: recorded in every ``_run.json`` and in ``MANIFEST.json``). On another machine the
last digits move, and a verdict whose interval ends near its threshold can flip. This module measures
by how much: for every table the runner published (``<folder>/<notebook>/*.csv``) it compares each
number of the committed table with the rerun's, and it lists every verdict of ``claims.csv`` that
changed. ``python -m reprobust.run --compare-to-committed`` runs a profile into ``build/compare/`` and
prints :func:`format_report` of :func:`compare_folders`.

Relative difference of two numbers ``a`` (committed) and ``b`` (rerun)::

    rel(a, b) = 0                          if a == b (NaN == NaN included)
              = inf                        if exactly one of them is NaN / not a number
              = |a - b| / max(|a|, |b|)    otherwise (symmetric, at most 2; 2 = sign flip)
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

RUN_FILE = "_run.json"
INDEX_FILE = "_outputs.json"  # plotting.INDEX_FILE (not imported: this module stays free of matplotlib)
COMPARED_SUFFIXES = (".png", ".csv", ".md")


def relative_difference(a, b) -> float:
    """``rel(a, b)`` as defined in the module docstring (floats; NaN for 'not a number').

    Example
    -------
    >>> relative_difference(-0.509, -0.507)
    0.003929273084479...
    """
    a, b = float(a), float(b)
    if math.isnan(a) and math.isnan(b):
        return 0.0
    if math.isnan(a) or math.isnan(b):
        return math.inf
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))


def _numeric(series: pd.Series) -> pd.Series:
    if series.dtype == bool:
        return series.astype(float)
    return pd.to_numeric(series, errors="coerce").astype(float)


def _align(ref: pd.DataFrame, new: pd.DataFrame):
    """Rows of both tables in corresponding order: by a unique ``id`` column when both have one,
    else by position. Returns ``(ref, new, note)``."""
    note = ""
    if "id" in ref.columns and "id" in new.columns and ref["id"].is_unique and new["id"].is_unique:
        common = [i for i in ref["id"] if i in set(new["id"])]
        if len(common) != len(ref) or len(common) != len(new):
            note = f"ids: {len(ref)} committed, {len(new)} rerun, {len(common)} in both"
        return (ref.set_index("id").loc[common].reset_index(), new.set_index("id").loc[common].reset_index(), note)
    n = min(len(ref), len(new))
    if len(ref) != len(new):
        note = f"rows: {len(ref)} committed, {len(new)} rerun (first {n} compared)"
    return ref.iloc[:n].reset_index(drop=True), new.iloc[:n].reset_index(drop=True), note


def compare_tables(committed_csv, rerun_csv) -> dict:
    """Compare the numbers of two CSV tables cell by cell.

    Every cell that is a number (or NaN) in the committed table is compared with the same cell of the
    rerun (same column, same row: by ``id`` when both tables have a unique one, else by position).

    Returns
    -------
    dict with ``numbers`` (cells compared), ``differ`` (cells whose values are not equal),
    ``max_rel_diff`` (largest :func:`relative_difference`, 0.0 when all equal), ``worst``
    (``{"row", "column", "committed", "rerun"}`` of that cell, or None) and ``note`` (columns or rows
    present on one side only; empty when the shapes agree).
    """
    ref = pd.read_csv(committed_csv)
    new = pd.read_csv(rerun_csv)
    notes = []
    only_ref = [c for c in ref.columns if c not in new.columns]
    if only_ref:
        notes.append(f"columns missing in the rerun: {', '.join(map(str, only_ref))}")
    ref, new, note = _align(ref, new)
    if note:
        notes.append(note)
    out = {"numbers": 0, "differ": 0, "max_rel_diff": 0.0, "worst": None, "note": "; ".join(notes)}
    for col in [c for c in ref.columns if c in new.columns]:
        a, b = _numeric(ref[col]), _numeric(new[col])
        # a committed cell counts as a number when it parses as one, or is empty/NaN in a numeric column
        is_number = a.notna() | (ref[col].isna() & (pd.api.types.is_numeric_dtype(ref[col])))
        for row in np.flatnonzero(is_number.to_numpy()):
            rel = relative_difference(a.iloc[row], b.iloc[row])
            out["numbers"] += 1
            if rel > 0:
                out["differ"] += 1
            if rel > out["max_rel_diff"]:
                out["max_rel_diff"] = rel
                label = ref["id"].iloc[row] if "id" in ref.columns else int(row)
                out["worst"] = {"row": label if isinstance(label, str) else int(label), "column": str(col),
                                "committed": _plain(ref[col].iloc[row]), "rerun": _plain(new[col].iloc[row])}
    return out


def _plain(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if math.isnan(v) else float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def _verdict_keys(df: pd.DataFrame) -> list:
    """Row keys of a claims table: ``id`` when present, else ``claim | statistic`` (``#k`` for repeats)."""
    if "id" in df.columns:
        base = [str(i) for i in df["id"]]
    else:
        base = [f"{c} | {s}" for c, s in zip(df.get("claim", [""] * len(df)), df.get("statistic", [""] * len(df)))]
    seen, keys = {}, []
    for k in base:
        seen[k] = seen.get(k, 0) + 1
        keys.append(k if seen[k] == 1 else f"{k} #{seen[k]}")
    return keys


def compare_verdicts(committed_csv, rerun_csv) -> dict:
    """Verdicts of two ``claims.csv`` tables, row by row (by ``id``, or by (claim, statistic)).

    Returns
    -------
    dict with ``rows`` (committed rows), ``changed``: list of ``{"key", "committed", "rerun"}`` for each
    row whose verdict differs (``rerun`` is None for a row the rerun lacks; rows only in the rerun are
    listed with ``committed`` None).
    """
    ref = pd.read_csv(committed_csv, dtype=str, keep_default_na=False)
    new = pd.read_csv(rerun_csv, dtype=str, keep_default_na=False)
    a = dict(zip(_verdict_keys(ref), ref["verdict"]))
    b = dict(zip(_verdict_keys(new), new["verdict"]))
    changed = [{"key": k, "committed": v, "rerun": b.get(k)} for k, v in a.items() if b.get(k) != v]
    changed += [{"key": k, "committed": None, "rerun": v} for k, v in b.items() if k not in a]
    return {"rows": len(a), "changed": changed}


def _platform(folder: Path):
    run = folder / RUN_FILE
    return json.loads(run.read_text()).get("platform") if run.exists() else None


def platform_differences(a: dict | None, b: dict | None) -> dict:
    """``{key: [committed, rerun]}`` for the platform entries that differ (``libraries.x`` for versions)."""
    if a is None or b is None:
        return {} if a is b else {"platform": ["not recorded" if a is None else "recorded",
                                               "not recorded" if b is None else "recorded"]}
    flat = lambda d: {**{k: v for k, v in d.items() if k != "libraries"},  # noqa: E731
                      **{f"libraries.{k}": v for k, v in (d.get("libraries") or {}).items()}}
    fa, fb = flat(a), flat(b)
    return {k: [fa.get(k), fb.get(k)] for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}


def machine_dependent_files(folder: Path) -> set:
    """File names of the outputs a notebook marked machine-dependent (wall times, throughput) in its
    output index (``_outputs.json``, :func:`reprobust.plotting.save_table`)."""
    index = Path(folder) / INDEX_FILE
    if not index.exists():
        return set()
    return {f for e in json.loads(index.read_text()) if e.get("machine_dependent") for f in e.get("files", [])}


def compare_notebook(committed: Path, rerun: Path) -> dict:
    """Compare one notebook's committed folder with its rerun folder.

    Outputs marked machine-dependent (in either folder's index) are listed, not compared: their numbers
    are expected to differ on another machine or under another load.

    Returns ``{"files": {"identical", "compared", "missing", "machine_dependent"}, "tables": {name:
    compare_tables(...)}, "max_rel_diff", "worst": {"table", ...}, "verdicts": compare_verdicts(...) or None}``.
    """
    committed, rerun = Path(committed), Path(rerun)
    skipped = machine_dependent_files(committed) | machine_dependent_files(rerun)
    files = sorted(p for p in committed.iterdir()
                   if p.suffix in COMPARED_SUFFIXES and not p.name.startswith("_") and p.name not in skipped)
    identical = sum((rerun / p.name).exists() and (rerun / p.name).read_bytes() == p.read_bytes() for p in files)
    missing = [p.name for p in files if not (rerun / p.name).exists()]
    tables = {p.stem: compare_tables(p, rerun / p.name) for p in files if p.suffix == ".csv" and p.name not in missing}
    worst_name = max(tables, key=lambda t: tables[t]["max_rel_diff"], default=None)
    out = {"files": {"identical": int(identical), "compared": len(files), "missing": missing,
                     "machine_dependent": sorted(skipped)}, "tables": tables,
           "max_rel_diff": tables[worst_name]["max_rel_diff"] if worst_name else 0.0,
           "worst": ({"table": worst_name, **tables[worst_name]["worst"]}
                     if worst_name and tables[worst_name]["worst"] else None),
           "verdicts": None}
    if (committed / "claims.csv").exists() and (rerun / "claims.csv").exists():
        out["verdicts"] = compare_verdicts(committed / "claims.csv", rerun / "claims.csv")
    return out


def compare_folders(committed, rerun, notebooks) -> dict:
    """Compare ``committed/<nb>`` with ``rerun/<nb>`` for each notebook name; also their platforms.

    Returns ``{"platform": {"committed", "rerun", "differs"}, "notebooks": {name: compare_notebook(...)}}``
    (JSON-serialisable; the runner writes it as ``COMPARISON.json`` beside the rerun).
    """
    committed, rerun = Path(committed), Path(rerun)
    names = [n for n in notebooks if (committed / n).is_dir() and (rerun / n).is_dir()]
    p_ref = next((p for p in (_platform(committed / n) for n in names) if p), None)
    p_new = next((p for p in (_platform(rerun / n) for n in names) if p), None)
    return {"platform": {"committed": p_ref, "rerun": p_new, "differs": platform_differences(p_ref, p_new)},
            "notebooks": {n: compare_notebook(committed / n, rerun / n) for n in names}}


def _fmt(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def format_report(report: dict, committed, rerun) -> str:
    """Human-readable lines for :func:`compare_folders`'s result."""
    lines = [f"comparison with the committed results in {committed} (rerun in {rerun}):"]
    differs = report["platform"]["differs"]
    if not differs:
        lines.append("  platform: the same as the committed run's (CPU, BLAS, threads, library versions)")
    else:
        lines.append("  platform differs from the committed run's: "
                     + "; ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in differs.items()))
    for name, nb in report["notebooks"].items():
        f = nb["files"]
        v = nb["verdicts"]
        head = f"  {name}: {f['identical']}/{f['compared']} files byte-identical"
        if nb["worst"]:
            w = nb["worst"]
            head += (f"; largest relative difference {nb['max_rel_diff']:.3g} ({w['table']}.csv, row {w['row']}, "
                     f"{w['column']}: {_fmt(w['committed'])} -> {_fmt(w['rerun'])})")
        else:
            head += "; every committed number reproduced exactly"
        if v is not None:
            head += f"; {len(v['changed'])} of {v['rows']} verdicts changed"
        lines.append(head)
        for t, res in nb["tables"].items():
            if res["differ"] or res["note"]:
                lines.append(f"      {t}.csv: {res['differ']} of {res['numbers']} numbers differ, largest relative "
                             f"difference {res['max_rel_diff']:.3g}" + (f" ({res['note']})" if res["note"] else ""))
        if f["missing"]:
            lines.append(f"      missing in the rerun: {', '.join(f['missing'])}")
        if f.get("machine_dependent"):
            lines.append(f"      machine-dependent, not compared: {', '.join(f['machine_dependent'])}")
        for c in (v or {}).get("changed", []):
            lines.append(f"      verdict changed: {c['key']}: {c['committed'] or '(no row)'} -> {c['rerun'] or '(no row)'}")
    return "\n".join(lines)


def check_reference(committed, profile: str, notebooks) -> None:
    """Refuse (``ValueError``, one line) a comparison that cannot be meaningful: no committed folder
    for a selected notebook, or committed results of another profile."""
    committed = Path(committed)
    have = sorted(p.name for p in committed.glob("*") if (p / RUN_FILE).exists()) if committed.is_dir() else []
    missing = [n for n in notebooks if n not in have]
    if missing:
        raise ValueError(f"no committed results for {missing[0]} in {committed}; valid choices: "
                         f"{', '.join(have) or '(none)'}")
    for n in notebooks:
        ran = json.loads((committed / n / RUN_FILE).read_text()).get("profile")
        if ran != profile:
            raise ValueError(f"the committed results of {n} are of profile {ran!r}, not {profile!r}; "
                             f"rerun with --profile {ran}")
