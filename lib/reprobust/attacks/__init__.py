"""Adversarial attacks, batched over images and device-aware.

Every attack takes a model mapping ``[0, 1]`` images to logits and returns an
:class:`AttackResult` — explicitly, because libraries disagree on what a failed attack returns
(foolbox returns zeros, torchattacks the original image).

Gradient attacks (``fgsm``, ``pgd``) live in :mod:`reprobust.attacks.gradient`, Auto-PGD (``apgd``: APGD-CE,
APGD-DLR, APGD-T) in :mod:`reprobust.attacks.apgd`; other families in their own modules (``square``,
``blackbox``, ``minimal``, ``deepfool``, ``rubbish``). The robust accuracy the notebooks report, worst case
over an ensemble of these, is :func:`reprobust.robustness.robust_accuracy`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class AttackResult(NamedTuple):
    """What every attack returns.

    Attributes
    ----------
    x_adv : Tensor (N, C, H, W)
        Adversarial images in [0, 1] (for a failed image: the attack's best attempt).
    success : BoolTensor (N,)
        True where the model's prediction on ``x_adv`` is wrong (untargeted) or the target (targeted).
    norms : Tensor (N,)
        Size of the perturbation ``x_adv - x`` in the attack's norm.
    """

    x_adv: torch.Tensor
    success: torch.Tensor
    norms: torch.Tensor


from .gradient import fgsm, perturbation_norm, pgd, wrong_class_confidence  # noqa: E402
from .apgd import apgd  # noqa: E402
from .confidence import scale_to_confidence  # noqa: E402

__all__ = ["AttackResult", "apgd", "fgsm", "pgd", "perturbation_norm", "scale_to_confidence",
           "wrong_class_confidence"]
