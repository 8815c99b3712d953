"""Training-state checkpoints: resume a long :func:`reprobust.train.fit` run after an interruption.

After every epoch ``fit(..., checkpoint_path=...)`` writes the complete training state — model and
optimiser state, the batch-order / augmentation generator, torch's global RNG (dropout) and, on CUDA,
the device RNGs, the step counter and the history — atomically, so a killed run leaves either the
previous epoch's file or the new one, never half a file. A restarted ``fit`` with the same arguments
loads it and continues with the next epoch; on the CPU the result is bit-identical to an uninterrupted
run (tested). Files load with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from .cache import atomic_write_bytes

#: Bump when the layout of the saved state changes (an old file is then ignored, not misread).
FORMAT = 1


def save_training_state(path, *, epoch: int, step: int, model, optimizer, generator: torch.Generator,
                        history: dict, signature: str, extra: dict | None = None) -> None:
    """Atomically write the state after ``epoch`` (0-based) has finished; ``extra``: further loop state
    (tensors, numbers, containers), e.g. the best validation epoch."""
    state = {
        "format": FORMAT, "epoch": int(epoch), "step": int(step), "signature": signature,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "history": history,
        "extra": extra or {},
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_training_state(path, signature: str) -> dict | None:
    """The saved state at ``path``, or None when there is none or it belongs to another run.

    Raises
    ------
    ValueError
        One line naming the file when it exists but cannot be read (delete it to start over).
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 — any unpickling failure means "do not trust"
        raise ValueError(f"training checkpoint {path} cannot be read ({type(err).__name__}); "
                         "delete it to restart this run from epoch 0") from None
    if state.get("format") != FORMAT or state.get("signature") != signature:
        return None
    return state


def restore_training_state(state: dict, *, model, optimizer, generator: torch.Generator) -> None:
    """Put a loaded state back into ``model``, ``optimizer``, ``generator`` and the global RNGs."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available() and len(state["cuda_rng"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
