"""Class selectivity index of hidden units and the selectivity regulariser.

The class selectivity index (SI) of Morcos et al. (2018), as used by Leavitt & Morcos ("Selectivity
considered harmful", ICLR 2021; "Linking average- and worst-case perturbation robustness via class
selectivity and dimensionality", arXiv 2010.07693) is, for one unit ``u``,

.. math::

    SI_u = \\frac{\\mu_{max} - \\mu_{-max}}{\\mu_{max} + \\mu_{-max} + \\varepsilon}

where :math:`\\mu_{max}` is the largest class-conditional mean activation of the unit and
:math:`\\mu_{-max}` the mean of the class-conditional means of the other classes. A unit of a
convolutional layer is one channel, its activation the mean over spatial positions. Activations must
be non-negative (taken after the ReLU), which bounds SI to ``[0, 1]``: 0 for a unit that responds
equally to every class, 1 for a unit that responds to one class only. ``ε`` keeps dead units
(all-zero activations) at SI = 0 instead of 0/0.

The network-level index averages over units within a layer, then over layers, so every layer counts
equally whatever its width:  :math:`\\mu_{SI} = \\frac1L \\sum_l \\frac1{U_l} \\sum_{u \\in l} SI_u`.

The regulariser trains with ``loss = CE − α · µ_SI`` computed per minibatch from class means, with
gradients through the ``max`` (α < 0 discourages selectivity, α > 0 encourages it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from ..validation import check_choice, check_range

#: ε of the SI denominator (Leavitt & Morcos; third-party code uses 1e-6 or 1e-7).
DEFAULT_EPS = 1e-7


def unit_activations(activations):
    """Reduce a layer's activations to one value per unit and sample.

    Parameters
    ----------
    activations : Tensor or ndarray of shape (N, U) or (N, C, *spatial)
        Activations of one layer. For convolutional maps a unit is one channel and its activation is
        the mean over all spatial positions.

    Returns
    -------
    Tensor or ndarray of shape (N, U)
        Same type as the input (a tensor keeps its autograd graph).

    Example
    -------
    >>> unit_activations(torch.ones(4, 3, 5, 5)).shape
    torch.Size([4, 3])
    """
    if activations.ndim < 2:
        raise ValueError(f"activations.ndim={activations.ndim} is out of range; valid range: >= 2 "
                         "(samples first, then units or channels)")
    if activations.ndim == 2:
        return activations
    if isinstance(activations, torch.Tensor):
        return activations.flatten(2).mean(dim=2)
    return np.asarray(activations).reshape(activations.shape[0], activations.shape[1], -1).mean(axis=2)


def class_conditional_means(unit_acts: torch.Tensor, labels: torch.Tensor, num_classes: int):
    """Mean activation of every unit over the samples of every class.

    Parameters
    ----------
    unit_acts : Tensor of shape (N, U)
    labels : Tensor of shape (N,), int64 in ``[0, num_classes)``
    num_classes : int

    Returns
    -------
    means : Tensor of shape (num_classes, U)
        Class-conditional means; rows of absent classes are 0.
    present : Tensor of shape (num_classes,), bool
        Which classes occur in ``labels``.

    Example
    -------
    >>> m, p = class_conditional_means(torch.tensor([[1.], [3.], [5.]]), torch.tensor([0, 0, 2]), 3)
    >>> m.squeeze(1).tolist(), p.tolist()
    ([2.0, 0.0, 5.0], [True, False, True])
    """
    labels = labels.to(unit_acts.device).long()
    # one-hot matmul: means (not sums), so unevenly represented classes weigh the same
    onehot = torch.nn.functional.one_hot(labels, num_classes).to(unit_acts.dtype)  # (N, K)
    counts = onehot.sum(dim=0)  # (K,)
    sums = onehot.T @ unit_acts  # (K, U)
    present = counts > 0
    means = sums / counts.clamp_min(1).unsqueeze(1)
    return means, present


def selectivity_from_class_means(means: torch.Tensor, present: torch.Tensor | None = None,
                                 eps: float = DEFAULT_EPS) -> torch.Tensor:
    """SI of every unit from its class-conditional means (differentiable; subgradient at the max).

    Parameters
    ----------
    means : Tensor of shape (K, U)
        Class-conditional mean activations (non-negative).
    present : Tensor of shape (K,), bool, optional
        Classes to use; µ_−max averages over the *present* classes other than the argmax. Default: all.
    eps : float
        Added to the denominator so that dead units get SI = 0.

    Returns
    -------
    Tensor of shape (U,)

    Example
    -------
    >>> round(selectivity_from_class_means(torch.tensor([[1.0], [0.0], [0.0]])).item(), 6)
    1.0
    """
    if present is None:
        present = torch.ones(means.shape[0], dtype=torch.bool, device=means.device)
    n_present = int(present.sum())
    if n_present < 2:
        raise ValueError(f"number of classes present={n_present} is out of range; valid range: >= 2 "
                         "(SI compares the best class with the others)")
    kept = means[present]  # (K', U)
    mu_max = kept.max(dim=0).values
    mu_rest = (kept.sum(dim=0) - mu_max) / (n_present - 1)
    return (mu_max - mu_rest) / (mu_max + mu_rest + eps)


def _to_tensor(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    return torch.as_tensor(np.asarray(x))


def class_selectivity_index(activations, labels, num_classes: int | None = None,
                            eps: float = DEFAULT_EPS, check_nonnegative: bool = True):
    """Class selectivity index of every unit of one layer (Leavitt & Morcos; Morcos et al. 2018).

    Parameters
    ----------
    activations : Tensor or ndarray of shape (N, U) or (N, C, *spatial)
        Post-ReLU activations; conv channels are averaged over space first.
    labels : Tensor or ndarray of shape (N,)
    num_classes : int, optional
        Default: ``max(labels) + 1``.
    eps : float
        Denominator ε; SI of an all-zero (dead) unit is 0.
    check_nonnegative : bool
        Refuse negative activations (SI is only bounded to [0, 1] after a ReLU).

    Returns
    -------
    Tensor or ndarray of shape (U,)
        A tensor (keeping the autograd graph) for tensor input, float64 ndarray otherwise.

    Example
    -------
    >>> acts = np.array([[1.0, 1.0], [0.0, 1.0]])   # unit 0 fires for class 0 only
    >>> class_selectivity_index(acts, np.array([0, 1])).round(6).tolist()
    [1.0, 0.0]
    """
    is_tensor = isinstance(activations, torch.Tensor)
    check_range("eps", eps, low=0)
    acts = unit_activations(_to_tensor(activations))
    if not is_tensor:
        acts = acts.double()
    labels = _to_tensor(labels).long()
    if labels.ndim != 1 or labels.shape[0] != acts.shape[0]:
        raise ValueError(f"labels shape {tuple(labels.shape)} does not match activations "
                         f"({acts.shape[0]} samples); valid: ({acts.shape[0]},)")
    if check_nonnegative and bool((acts.detach() < 0).any()):
        raise ValueError(f"activations min={float(acts.detach().min()):.3g} is out of range; valid range: "
                         ">= 0 (take activations after the ReLU)")
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    means, present = class_conditional_means(acts, labels, num_classes)
    si = selectivity_from_class_means(means, present, eps)
    return si if is_tensor else si.numpy()


def dead_units(activations, tol: float = 0.0):
    """Units whose activation never exceeds ``tol`` on the given samples.

    Parameters
    ----------
    activations : Tensor or ndarray of shape (N, U) or (N, C, *spatial)
    tol : float

    Returns
    -------
    ndarray of shape (U,), bool

    Example
    -------
    >>> dead_units(np.array([[0.0, 1.0], [0.0, 0.0]])).tolist()
    [True, False]
    """
    acts = _to_tensor(activations).detach()
    # a channel is dead when it is zero at every sample *and* every spatial position
    flat = acts.reshape(acts.shape[0], acts.shape[1], -1) if acts.ndim > 2 else acts.unsqueeze(2)
    return (flat.amax(dim=(0, 2)) <= tol).cpu().numpy()


@dataclass
class SelectivitySummary:
    """Selectivity of a network: per unit, per layer and overall.

    Attributes
    ----------
    per_unit : dict layer -> ndarray of shape (U_l,)
    layer_mean : dict layer -> float (mean SI over the layer's units, dead units included as 0)
    dead_fraction : dict layer -> float (fraction of units that never fire on these samples)
    network_mean : float (mean of the layer means, µ_SI)
    """

    per_unit: dict = field(default_factory=dict)
    layer_mean: dict = field(default_factory=dict)
    dead_fraction: dict = field(default_factory=dict)
    network_mean: float = float("nan")

    def to_rows(self) -> list[dict]:
        """One dict per layer (``layer``, ``mean_si``, ``dead_fraction``, ``n_units``) for a DataFrame."""
        return [dict(layer=name, mean_si=self.layer_mean[name], dead_fraction=self.dead_fraction[name],
                     n_units=len(self.per_unit[name])) for name in self.per_unit]


def network_selectivity(activations_by_layer: Mapping[str, object], labels,
                        num_classes: int | None = None, eps: float = DEFAULT_EPS,
                        exclude_dead: bool = False, dead_tol: float = 0.0) -> SelectivitySummary:
    """Per-layer and network-mean SI (µ_SI: mean over units, then over layers).

    Parameters
    ----------
    activations_by_layer : mapping layer name -> activations of shape (N, U) or (N, C, *spatial)
        Post-ReLU activations of the hidden layers (exclude the logits).
    labels : array of shape (N,)
    num_classes : int, optional
    eps : float
    exclude_dead : bool
        Leave dead units out of the layer means (default False: they count as SI = 0, as the ε in the
        formula implies); their fraction is reported either way.
    dead_tol : float

    Returns
    -------
    SelectivitySummary

    Example
    -------
    >>> acts = {"a": np.array([[1.0], [0.0]]), "b": np.array([[1.0], [1.0]])}
    >>> round(network_selectivity(acts, np.array([0, 1])).network_mean, 6)
    0.5
    """
    if len(activations_by_layer) == 0:
        raise ValueError("activations_by_layer is empty; valid: at least one hidden layer")
    summary = SelectivitySummary()
    for name, acts in activations_by_layer.items():
        acts_t = _to_tensor(acts).detach().cpu()
        si = np.asarray(class_selectivity_index(acts_t.double().numpy(), labels, num_classes, eps))
        dead = dead_units(acts_t, dead_tol)
        summary.per_unit[name] = si
        summary.dead_fraction[name] = float(dead.mean())
        kept = si[~dead] if exclude_dead else si
        summary.layer_mean[name] = float(kept.mean()) if kept.size else 0.0
    summary.network_mean = float(np.mean(list(summary.layer_mean.values())))
    return summary


def mean_selectivity(activations_by_layer: Mapping[str, torch.Tensor], labels: torch.Tensor,
                     num_classes: int, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """Differentiable µ_SI of a minibatch (mean over units, then layers), for the regulariser.

    Parameters
    ----------
    activations_by_layer : mapping layer name -> Tensor of shape (B, U) or (B, C, *spatial)
        Post-ReLU activations *with* their autograd graph.
    labels : Tensor of shape (B,)
    num_classes : int
        Classes absent from the batch are left out of µ_−max (use stratified batches so that every
        class appears).
    eps : float

    Returns
    -------
    Tensor, scalar

    Example
    -------
    >>> a = torch.tensor([[2.0], [0.0]], requires_grad=True)
    >>> mean_selectivity({"l": a}, torch.tensor([0, 1]), 2).item()
    1.0
    """
    if len(activations_by_layer) == 0:
        raise ValueError("activations_by_layer is empty; valid: at least one hidden layer")
    layer_means = []
    for acts in activations_by_layer.values():
        si = class_selectivity_index(acts, labels, num_classes, eps, check_nonnegative=False)
        layer_means.append(si.mean())
    return torch.stack(layer_means).mean()


def relu_layer_names(model: torch.nn.Module) -> list[str]:
    """Names of every ``nn.ReLU`` module of ``model`` in registration order (the default SI layers).

    Example
    -------
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 2))
    >>> relu_layer_names(net)
    ['1']
    """
    return [name for name, module in model.named_modules() if name and isinstance(module, torch.nn.ReLU)]


class SelectivityRegularizer:
    """Extra-loss term ``−α · µ_SI`` for the training loop (the paper's ``L = CE − α·µ_SI``).

    α < 0 discourages class selectivity, α > 0 encourages it, α = 0 is the unregularised baseline.
    :func:`reprobust.train.fit` calls it as ``fn(activations, labels, logits)`` with the captured
    activations (autograd graph kept) of :attr:`layers`, and adds the result to the loss. Registered
    in :data:`reprobust.train.REGULARIZERS` as ``"class_selectivity"``, so a training spec can ask for
    ``{"name": "class_selectivity", "alpha": -1.0}``.

    Parameters
    ----------
    alpha : float
        Regularisation strength (sign convention of Leavitt & Morcos).
    layers : sequence of str
        Hidden layers (post-ReLU) whose activations enter µ_SI; never the logits.
    num_classes : int
    eps : float

    Example
    -------
    >>> reg = SelectivityRegularizer(alpha=1.0, layers=["l"], num_classes=2)
    >>> a = torch.tensor([[2.0], [0.0]])
    >>> round(reg({"l": a}, torch.tensor([0, 1]), None).item(), 6)
    -1.0
    """

    def __init__(self, alpha: float, layers: Sequence[str], num_classes: int, eps: float = DEFAULT_EPS):
        self.alpha = float(alpha)
        self.layers = list(layers)
        if not self.layers:
            raise ValueError("layers is empty; valid: the names of one or more post-ReLU hidden layers")
        self.num_classes = int(num_classes)
        self.eps = float(eps)

    def __call__(self, activations, labels, logits=None) -> torch.Tensor:
        missing = [name for name in self.layers if name not in activations]
        if missing:
            raise ValueError(f"activations lack layers {missing}; valid choices: {sorted(activations)}")
        if self.alpha == 0.0:
            # the baseline: no term (and no wasted backward through the class means)
            return activations[self.layers[0]].new_zeros(())
        mu_si = mean_selectivity({n: activations[n] for n in self.layers}, labels, self.num_classes, self.eps)
        return -self.alpha * mu_si

    def __repr__(self) -> str:
        return f"SelectivityRegularizer(alpha={self.alpha}, layers={self.layers}, eps={self.eps})"


#: Training arms of the class-selectivity experiment: the α grid trains ``standard``; the two arms at α = 0
#: test the link in the other direction (Gaussian-noise augmentation, adversarial training).
ARMS = ("standard", "noise", "adversarial")


def selectivity_training_spec(settings: Mapping, alpha: float, seed: int, arm: str = "standard") -> dict:
    """The model spec (and cache key) of one network of the class-selectivity experiment (notebook 04).

    Parameters
    ----------
    settings : mapping with ``dataset, image_size, n_train, n_test, model`` (the data set and a
        :mod:`reprobust.models` spec), ``epochs, batch_size, lr, patience`` (fit; 10 % of the training
        set held out for early stopping), ``noise_std`` (the noise arm) and ``adv_eps, adv_steps`` (the
        adversarial arm: L∞ PGD, step ε/2, early stopping on robust accuracy); optional ``train_extra``,
        more fit settings (e.g. augmentation and schedule on the full profile)
    alpha : float, the regulariser's weight (``loss = CE − α · µ_SI``)
    seed : int
    arm : {'standard', 'noise', 'adversarial'}

    Returns
    -------
    dict for :func:`reprobust.train.trained_model`

    Example
    -------
    >>> spec = selectivity_training_spec(S, alpha=-1.0, seed=0)
    """
    check_choice("arm", arm, ARMS)
    train = {"epochs": settings["epochs"], "batch_size": settings["batch_size"], "lr": settings["lr"],
             "stratified": True, "val_fraction": 0.1, "patience": settings["patience"],
             "regularizer": {"name": "class_selectivity", "alpha": float(alpha)}, **settings.get("train_extra", {})}
    if arm == "noise":
        train["noise_std"] = settings["noise_std"]
    elif arm == "adversarial":
        train["adversarial"] = {"attack": "pgd", "norm": "linf", "eps": settings["adv_eps"],
                                "steps": settings["adv_steps"], "step_size": settings["adv_eps"] / 2}
        train["monitor"] = "robust_accuracy"
    data = {"name": settings["dataset"], "image_size": settings["image_size"], "n_train": settings["n_train"],
            "n_test": settings["n_test"]}
    return {"data": data, "model": dict(settings["model"]), "train": train, "seed": int(seed)}


def _register():
    # registering here keeps train.py free of metric imports; train does not import metrics, so
    # there is no import cycle
    from ..train import REGULARIZERS, register_regularizer

    if "class_selectivity" in REGULARIZERS:
        return

    @register_regularizer("class_selectivity")
    def class_selectivity(model, alpha: float, layers: Sequence[str] | None = None, eps: float = DEFAULT_EPS):
        """Factory for :func:`reprobust.train.fit`: ``(layers, SelectivityRegularizer)``.

        ``layers`` defaults to every ReLU module of ``model`` (:func:`relu_layer_names`).
        """
        layers = relu_layer_names(model) if layers is None else list(layers)
        head = getattr(model, "classifier", None)
        # A dense classifier (most models) or a 1×1 class-map convolution (NIN, All-CNN-C).
        num_classes = getattr(head, "out_features", None) or getattr(head, "out_channels", None)
        if num_classes is None:
            raise ValueError("model has no 'classifier' linear layer; valid: a reprobust.models model")
        return layers, SelectivityRegularizer(alpha, layers, num_classes, eps)


_register()
