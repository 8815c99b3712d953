"""Capture named layer activations with forward hooks that *clone* what they record.

Two classic bugs of naive hooks are avoided here (and covered by tests):

- an in-place operation after the hooked module (``nn.ReLU(inplace=True)``, ``x += …``)
  overwrites the stored tensor unless it is cloned;
- a module called twice in one forward pass (a reused ``nn.ReLU``) would keep only its last
  call; here every call is recorded, the second under ``"name#1"``, the third ``"name#2"`` …
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

from .validation import check_choice, check_range


class ActivationRecorder:
    """Context manager recording the outputs of named modules.

    Parameters
    ----------
    model : nn.Module
    layers : list of str
        Module names as in ``model.named_modules()``.
    detach : bool, default True
        Detach recorded tensors (False keeps the autograd graph, e.g. for a regulariser).
    transform : callable, optional
        Applied to each output inside the hook, *instead of* the clone: what it returns is recorded. It
        must return a new tensor (not a view of the output), which an in-place operation later in the
        forward pass cannot change — e.g. a Gram matrix, so the features themselves are never stored.

    Example
    -------
    >>> with ActivationRecorder(net, ["act1"]) as rec:
    ...     net(x)
    >>> rec.activations["act1"].shape
    """

    def __init__(self, model: nn.Module, layers, detach: bool = True, transform=None):
        modules = dict(model.named_modules())
        for name in layers:
            check_choice("layer", name, [n for n in modules if n])
        self.model, self.layers, self.detach = model, list(layers), detach
        self.transform = transform
        self._modules = modules
        self._handles = []
        self.activations: dict = {}
        self._calls = defaultdict(int)

    def _hook(self, name):
        def hook(module, inputs, output):
            k = self._calls[name]
            self._calls[name] += 1
            key = name if k == 0 else f"{name}#{k}"
            out = output.detach() if self.detach else output
            self.activations[key] = out.clone() if self.transform is None else self.transform(out)

        return hook

    def reset(self):
        """Forget what was recorded (call between forward passes)."""
        self.activations = {}
        self._calls = defaultdict(int)

    def __enter__(self):
        self.reset()
        self._handles = [self._modules[n].register_forward_hook(self._hook(n)) for n in self.layers]
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []
        return False


@torch.no_grad()
def capture_activations(model: nn.Module, x: torch.Tensor, layers=None, *, batch_size: int = 512,
                        device=None, flatten: bool = False, include_logits: bool = False,
                        transform=None) -> dict:
    """Activations of ``layers`` for all of ``x``, in eval mode, batched.

    Parameters
    ----------
    model : nn.Module
    x : Tensor of shape (N, C, H, W), in [0, 1]
    layers : list of str, optional
        Default ``model.layer_names``.
    batch_size : int, default 512
    device : torch.device, optional
        Where to run the forward pass (default: the model's device). Results are returned on CPU.
    flatten : bool, default False
        Flatten each activation to ``(N, D)``.
    include_logits : bool, default False
        Add the model output under the key ``"logits"``.
    transform : callable, optional
        Reduce each batch's activation inside the hook (see :class:`ActivationRecorder`); with several
        batches the reduced results are concatenated along the first dimension.

    Returns
    -------
    dict of str → Tensor with first dimension N (order: execution order of the recorded calls)
    """
    check_range("batch_size", batch_size, low=1)
    layers = list(model.layer_names if layers is None else layers)
    dev = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    chunks = defaultdict(list)
    try:
        with ActivationRecorder(model, layers, transform=transform) as rec:
            for xb in torch.split(x, batch_size):
                rec.reset()
                out = model(xb.to(dev))
                for k, v in rec.activations.items():
                    chunks[k].append(v.flatten(1).cpu() if flatten else v.cpu())
                if include_logits:
                    chunks["logits"].append(out.detach().cpu())
    finally:
        model.train(was_training)
    # one chunk (a single batch) needs no concatenation copy
    return {k: v[0] if len(v) == 1 else torch.cat(v) for k, v in chunks.items()}
