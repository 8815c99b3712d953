"""One plotting style, and byte-stable, atomic saving of figures and tables.

PNG files are saved without the "Software" metadata and PDFs without a creation date, so that a
rerun with the same seed writes identical bytes (``git status`` stays clean).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import matplotlib

# Headless by default — but never override a backend chosen through $MPLBACKEND: in JupyterLab the
# kernel sets it to matplotlib-inline so that figures render in the notebook (forcing Agg here would
# silently hide every plot from a reader), and the headless runner sets it to Agg itself.
if not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .cache import atomic_write_bytes  # noqa: E402

PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
STYLE = {
    "figure.dpi": 100, "savefig.dpi": 110, "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9,
    "legend.fontsize": 8, "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.grid": True,
    "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE), "image.cmap": "viridis",
    "svg.hashsalt": "reprobust", "pdf.compression": 6,
}
INDEX_FILE = "_outputs.json"


def apply_style():
    """Set the project's matplotlib style (colour-blind-safe palette, small fonts, light grid)."""
    matplotlib.rcParams.update(STYLE)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _register(folder: Path, entry: dict):
    index_path = folder / INDEX_FILE
    index = json.loads(index_path.read_text()) if index_path.exists() else []
    index = [e for e in index if e["name"] != entry["name"]] + [entry]
    atomic_write_bytes(index_path, json.dumps(index, indent=1).encode())


def save_figure(fig, name: str, folder, *, caption: str = "", pdf: bool = True) -> list:
    """Save ``fig`` as ``<folder>/<name>.png`` (and ``.pdf``) byte-stably and register it.

    Returns the list of written paths.
    """
    folder = Path(folder)
    written = []
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None}, bbox_inches="tight")
    atomic_write_bytes(folder / f"{name}.png", buf.getvalue())
    written.append(folder / f"{name}.png")
    if pdf:
        buf = io.BytesIO()
        fig.savefig(buf, format="pdf", metadata={"CreationDate": None, "Producer": None, "Creator": None},
                    bbox_inches="tight")
        atomic_write_bytes(folder / f"{name}.pdf", buf.getvalue())
        written.append(folder / f"{name}.pdf")
    _register(folder, {"name": name, "kind": "figure", "files": [f"{name}.png"], "caption": caption})
    return written


def markdown_table(df: pd.DataFrame, float_format: str = "{:.3g}") -> str:
    """A GitHub-flavoured Markdown table (no extra dependency)."""

    def cell(v):
        if v is None:
            return ""
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else float_format.format(v)
        return str(v).replace("|", "\\|").replace("\n", " ")

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def save_table(df: pd.DataFrame, name: str, folder, *, caption: str = "", machine_dependent: bool = False) -> list:
    """Save ``df`` as ``<folder>/<name>.csv`` and ``<folder>/<name>.md`` and register it.

    ``machine_dependent=True`` marks a table whose numbers depend on the machine and its load (wall
    times, throughput) in the output index: :mod:`reprobust.compare` lists it and does not compare it.
    """
    folder = Path(folder)
    atomic_write_bytes(folder / f"{name}.csv", df.to_csv(index=False, float_format="%.6g").encode())
    atomic_write_bytes(folder / f"{name}.md", markdown_table(df).encode())
    entry = {"name": name, "kind": "table", "files": [f"{name}.csv", f"{name}.md"], "caption": caption}
    if machine_dependent:  # only then: the index of every other table stays byte-identical
        entry["machine_dependent"] = True
    _register(folder, entry)
    return [folder / f"{name}.csv", folder / f"{name}.md"]


def heatmap(ax, matrix, *, labels_x=None, labels_y=None, vmin=0.0, vmax=1.0, cmap="inferno", title=""):
    """Layer×layer heatmap with layer 0 at the bottom left (rows = model A, y axis)."""
    im = ax.imshow(np.asarray(matrix), origin="lower", vmin=vmin, vmax=vmax, cmap=cmap, aspect="auto")
    if labels_x is not None:
        ax.set_xticks(range(len(labels_x)), labels_x, rotation=90)
    if labels_y is not None:
        ax.set_yticks(range(len(labels_y)), labels_y)
    ax.grid(False)
    ax.set_title(title)
    return im
