"""The notebook context: what the first code cell of every notebook sets up.

>>> ctx = setup_notebook("03_representation_similarity", profile="quick", seed=0)
>>> S = ctx.settings({"smoke": {"epochs": 1}, "quick": {"epochs": 20}, "full": {"epochs": 200}}, epochs=None)
>>> ctx.save_figure(fig, "cka_heatmaps", caption="...")
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import plotting
from .cache import Cache
from .device import resolve_device, seed_everything
from .paths import BUILD_DIR, FIGURES_DIR
from .validation import check_choice

PROFILES = ("smoke", "quick", "full")


@dataclass
class NotebookContext:
    """Everything a notebook needs besides its own parameters.

    Attributes
    ----------
    notebook : str, e.g. "03_representation_similarity"
    profile : {'smoke', 'quick', 'full'}
    seed : int
    device : torch.device
    cache : Cache
    output_dir : Path, where figures and tables of this run go
    """

    notebook: str
    profile: str
    seed: int
    device: torch.device
    cache: Cache
    output_dir: Path
    saved: list = field(default_factory=list)

    def settings(self, per_profile: dict, overrides: dict | None = None, **parameters) -> dict:
        """The current profile's settings with the non-``None`` notebook ``parameters`` applied, then
        ``overrides``.

        ``overrides`` is the notebooks' generic ``overrides`` parameter: a dict of any of the profile's
        settings (``{"epochs": 1, "model": {"widen": 1}}``); a dict value is merged into a dict setting
        key by key, so a test or a reader can shrink one field of a model spec. This is how the
        end-to-end test runs the ``full`` profile's code path with tiny sizes on CPU.

        Raises ``ValueError`` for a parameter or override that is not a setting of the profile.
        """
        check_choice("profile", self.profile, per_profile)
        s = dict(per_profile[self.profile])
        for source in (parameters, overrides or {}):
            for k, v in source.items():
                if k not in s:
                    raise ValueError(f"unknown setting {k!r}; valid choices: {', '.join(sorted(s))}")
                if v is None:
                    continue
                s[k] = _merged(s[k], v)
        return s

    def save_figure(self, fig, name: str, caption: str = "", close: bool = False):
        """Save a figure as PNG + PDF into :attr:`output_dir` (byte-stable, atomic)."""
        paths = plotting.save_figure(fig, name, self.output_dir, caption=caption)
        self.saved.extend(paths)
        if close:
            import matplotlib.pyplot as plt

            plt.close(fig)
        return paths

    def save_table(self, df, name: str, caption: str = "", machine_dependent: bool = False):
        """Save a table as CSV + Markdown into :attr:`output_dir` (``machine_dependent``: see
        :func:`reprobust.plotting.save_table`)."""
        paths = plotting.save_table(df, name, self.output_dir, caption=caption, machine_dependent=machine_dependent)
        self.saved.extend(paths)
        return paths


def _merged(base, update):
    """``update`` over ``base``; dicts merge key by key (recursively), anything else is replaced."""
    if isinstance(base, dict) and isinstance(update, dict):
        out = dict(base)
        for k, v in update.items():
            out[k] = _merged(base.get(k), v) if k in base else v
        return out
    return update


def default_output_dir(notebook: str, profile: str) -> Path:
    """``figures/<notebook>`` — except the smoke profile, which never writes into ``figures/``."""
    if profile == "smoke":
        return BUILD_DIR / "smoke" / notebook
    return FIGURES_DIR / notebook


def default_threads() -> int:
    """Torch CPU threads for a notebook: ``$REPROBUST_THREADS`` or 1.

    One thread is the default on purpose: the small models of the smoke and quick profiles train
    faster single-threaded than with torch's default thread pool, float results then do not depend on
    the machine's core count (reductions are split differently with more threads), and the runner
    uses the cores by executing notebooks in parallel (``--jobs``).
    """
    value = os.environ.get("REPROBUST_THREADS", "1")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"REPROBUST_THREADS={value!r} must be a positive integer")
    return int(value)


def setup_notebook(notebook: str, *, profile: str = "quick", seed: int = 0, device: str = "auto",
                   data_dir=None, cache_dir=None, output_dir=None) -> NotebookContext:
    """Validate the common parameters, seed everything, apply the plot style, and return the context.

    Parameters
    ----------
    notebook : str, the notebook's name (its figure folder)
    profile : {'smoke', 'quick', 'full'}
    seed : int
    device : {'auto', 'cpu', 'cuda'}
    data_dir : path, optional, torchvision data (exported as ``REPROBUST_DATA_DIR``)
    cache_dir : path, optional
    output_dir : path, optional (default :func:`default_output_dir`)
    """
    check_choice("profile", profile, PROFILES)
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    dev = resolve_device(device)
    if data_dir is not None:
        if not Path(data_dir).is_dir():
            raise ValueError(f"data_dir={str(data_dir)!r} does not exist; pass an existing folder")
        os.environ["REPROBUST_DATA_DIR"] = str(data_dir)
    torch.set_num_threads(default_threads())
    seed_everything(seed)
    plotting.apply_style()
    out = Path(output_dir) if output_dir is not None else default_output_dir(notebook, profile)
    out.mkdir(parents=True, exist_ok=True)
    return NotebookContext(notebook, profile, seed, dev, Cache(cache_dir), out)
