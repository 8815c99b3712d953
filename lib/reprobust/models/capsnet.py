"""A capsule network with dynamic routing-by-agreement (Sabour, Frosst & Hinton, NeurIPS 2017).

Architecture (paper §4, scaled by options): ``conv`` (ReLU) → ``primary capsules`` (a convolution whose
channels are grouped into ``primary_types`` capsule types of ``primary_dim`` dimensions, squashed) →
``class capsules`` (``num_classes`` capsules of ``class_dim`` dimensions reached by 3 iterations of
routing-by-agreement). The length of a class capsule is the probability that the class is present.

Defaults per input size:

* 8×8 digits: conv 32 × 3×3 (stride 1) → primary 8 types × 8-D, 3×3, stride 1 → 4×4×8 = 128 capsules
  (kept small so that the 11 models per defence of the Raw Zero-Shot protocol train in seconds on CPU).
* 28×28 / 32×32 (paper scale, ``full`` profile): conv 256 × 9×9 → primary 32 types × 8-D, 9×9, stride 2
  → 6×6×32 (MNIST) or 8×8×32 (CIFAR-10) capsules, exactly as in Sabour et al.

**Logits.** The network's output is ``log(‖v_c‖ + eps)``. Capsule lengths lie in (0, 1) and are not a
distribution; ``softmax`` of these logits is exactly ``‖v_c‖ / Σ_j ‖v_j‖``, the length renormalisation
the reproduction spec prescribes for Raw Zero-Shot soft labels (paperA §1.1: the authors' code outputs
raw lengths and never dumps CapsNet soft labels). Arg-max is unchanged, so accuracy and attack success
are those of the lengths, and cross-entropy-based attacks (PGD) still have useful gradients. Train with
:func:`margin_loss`, which recovers the lengths as ``exp(logits)``.

**Reconstruction decoder** (optional, ``reconstruction=True``; Sabour et al. §4.1): the class capsules,
masked to the true class during training (the longest capsule otherwise), go through
``FC 512 → ReLU → FC 1024 → ReLU → FC C·H·W → sigmoid``. Train it with the regulariser
``{"name": "capsule_reconstruction", "weight": 0.0005}`` of :func:`reprobust.train.fit` (sum of squared
pixel errors × 0.0005, as in the paper). It is off by default: the Raw Zero-Shot metrics only read the
class capsules, and the decoder more than doubles training time on CPU. Sabour-size on MNIST: 6.8M
parameters without the decoder, 8.2M with it (tested).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..validation import check_range
from . import register_model
from ._common import InputStem

LENGTH_EPS = 1e-7


def squash(s: torch.Tensor, dim: int = -1, eps: float = 1e-8) -> torch.Tensor:
    """Squash non-linearity, Sabour et al. 2017 eq. (1): ``v = ‖s‖² / (1 + ‖s‖²) · s / ‖s‖``.

    Keeps the direction and maps the length into [0, 1).

    Parameters
    ----------
    s : Tensor of shape (..., D)
    dim : int, the capsule dimension

    Returns
    -------
    Tensor of the same shape with ``‖v‖ < 1`` along ``dim``.

    Example
    -------
    >>> v = squash(torch.tensor([[3.0, 4.0]]))
    >>> round(float(v.norm()), 4)
    0.9615
    """
    sq = (s * s).sum(dim=dim, keepdim=True)
    return s * (sq / (1.0 + sq) / torch.sqrt(sq + eps))


def dynamic_routing(u_hat: torch.Tensor, iterations: int = 3, *, detach_intermediate: bool = True
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Routing-by-agreement, Sabour et al. 2017 Procedure 1.

    ``b_ij = 0``; repeat ``iterations`` times: ``c_i = softmax_j(b_i)``, ``s_j = Σ_i c_ij û_{j|i}``,
    ``v_j = squash(s_j)``, and (except after the last iteration) ``b_ij += û_{j|i} · v_j``.

    Parameters
    ----------
    u_hat : Tensor of shape (B, n_out, n_in, D)
        Prediction vectors ``û_{j|i} = W_ij u_i``, laid out output-capsule first so that both the
        weighted sum and the agreement are batched matrix products.
    iterations : int >= 1
    detach_intermediate : bool, default True
        Route the intermediate iterations on a gradient-stopped copy of ``û`` so that gradients flow
        through the final iteration only (as in the widely used CapsNet-Keras implementation); the
        forward values are identical, the backward pass is about twice as fast.

    Returns
    -------
    v : Tensor of shape (B, n_out, D), output capsules
    c : Tensor of shape (B, n_out, n_in), final coupling coefficients (sum to 1 over ``n_out``)
    """
    check_range("routing iterations", iterations, low=1)
    u_route = u_hat.detach() if detach_intermediate else u_hat
    b = u_hat.new_zeros(u_hat.shape[:3])
    for it in range(iterations):
        c = torch.softmax(b, dim=1)
        last = it == iterations - 1
        s = (c.unsqueeze(-2) @ (u_hat if last else u_route)).squeeze(-2)  # (B, n_out, D)
        v = squash(s)
        if not last:
            b = b + (u_route @ v.unsqueeze(-1)).squeeze(-1)
    return v, c


def margin_loss(logits: torch.Tensor, y: torch.Tensor, *, m_plus: float = 0.9, m_minus: float = 0.1,
                lambda_absent: float = 0.5) -> torch.Tensor:
    """Margin loss, Sabour et al. 2017 eq. (4), averaged over the batch.

    ``L_c = T_c max(0, m+ − ‖v_c‖)² + λ (1 − T_c) max(0, ‖v_c‖ − m−)²``, summed over classes.

    Parameters
    ----------
    logits : Tensor of shape (B, N), as returned by :class:`CapsNet` (``log`` of capsule lengths)
    y : LongTensor of shape (B,) or float Tensor (B, N) of (soft) targets
        Soft targets (label smoothing) weight the present/absent terms per class.

    Returns
    -------
    Tensor, scalar
    """
    lengths = logits.exp()
    t = F.one_hot(y, lengths.shape[1]).to(lengths.dtype) if y.dim() == 1 else y.to(lengths.dtype)
    present = F.relu(m_plus - lengths).pow(2)
    absent = F.relu(lengths - m_minus).pow(2)
    return (t * present + lambda_absent * (1 - t) * absent).sum(dim=1).mean()


def _out_size(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


@register_model("capsnet")
class CapsNet(nn.Module):
    """Capsule network with dynamic routing; outputs ``log`` capsule lengths as logits.

    Parameters
    ----------
    input_shape : tuple (C, H, W)
    num_classes : int
    mean, std : sequence of float, optional, per-channel input normalisation (applied inside the
        model, so attacks work in [0, 1] pixel space)
    conv_channels : int, optional (default 32 for inputs <= 16 px, else 256)
    conv_kernel : int, optional (default 3 for <= 16 px, else 9)
    primary_types : int, optional (default 8 / 32)
    primary_dim : int, default 8
    primary_kernel : int, optional (default 3 / 9)
    primary_stride : int, optional (default 1 / 2)
    class_dim : int, default 16
    routing_iterations : int, default 3
    detach_routing : bool, default True, see :func:`dynamic_routing`
    reconstruction : bool, default False, add the reconstruction decoder (:meth:`reconstruct`)

    Attributes
    ----------
    layer_names : list of str, hidden layers in execution order: ``act1`` (ReLU of the first conv),
        ``primary_caps`` (squashed primary capsules ``(B, num_primary, primary_dim)``) and ``class_caps``
        (class capsules ``(B, N, class_dim)``). There is no linear ``classifier``: the class capsules'
        lengths are the output.

    Example
    -------
    >>> from reprobust.models import build_model
    >>> net = build_model("capsnet", input_shape=(1, 8, 8), num_classes=10, mean=(0.3,), std=(0.4,))
    >>> net(torch.rand(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(self, *, input_shape, num_classes, mean=None, std=None, conv_channels=None,
                 conv_kernel=None, primary_types=None, primary_dim=8, primary_kernel=None,
                 primary_stride=None, class_dim=16, routing_iterations=3, detach_routing=True,
                 reconstruction=False):
        super().__init__()
        c, h, w = input_shape
        small = max(h, w) <= 16
        conv_channels = conv_channels or (32 if small else 256)
        conv_kernel = conv_kernel or (3 if small else 9)
        primary_types = primary_types or (8 if small else 32)
        primary_kernel = primary_kernel or (3 if small else 9)
        primary_stride = primary_stride or (1 if small else 2)
        check_range("num_classes", num_classes, low=2)
        check_range("routing_iterations", routing_iterations, low=1)
        self.stem = InputStem(c, mean, std)
        self.conv1 = nn.Conv2d(c, conv_channels, conv_kernel)
        self.act1 = nn.ReLU()
        self.primary_conv = nn.Conv2d(conv_channels, primary_types * primary_dim, primary_kernel,
                                      stride=primary_stride)
        ph = _out_size(_out_size(h, conv_kernel, 1), primary_kernel, primary_stride)
        pw = _out_size(_out_size(w, conv_kernel, 1), primary_kernel, primary_stride)
        if ph < 1 or pw < 1:
            raise ValueError(f"input_shape={tuple(input_shape)} is too small for kernels "
                             f"{conv_kernel}/{primary_kernel}; valid: H, W >= {conv_kernel + primary_kernel - 1}")
        self.primary_dim = primary_dim
        self.num_primary = primary_types * ph * pw
        self.num_classes = num_classes
        self.routing_iterations = routing_iterations
        self.detach_routing = detach_routing
        # One transformation matrix W_ij per (primary capsule i, class capsule j), as in the paper.
        self.weight = nn.Parameter(torch.randn(self.num_primary, num_classes, class_dim, primary_dim)
                                   * (1.0 / math.sqrt(primary_dim)) * 0.1)
        # Named hook points (identity) so reprobust.features can capture the squashed capsules.
        self.primary_caps = nn.Identity()
        self.class_caps = nn.Identity()
        self.layer_names = ["act1", "primary_caps", "class_caps"]
        # The raw [0, 1] input as a hook point (not a hidden layer): the reconstruction target.
        self.pixels = nn.Identity()
        self.input_shape = (c, h, w)
        self.decoder = None
        if reconstruction:
            self.decoder = nn.Sequential(nn.Linear(num_classes * class_dim, 512), nn.ReLU(),
                                         nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, c * h * w), nn.Sigmoid())

    def reconstruct(self, v: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images reconstructed from class capsules ``v`` (B, N, D), masked to class ``y`` (default: the
        longest capsule), shape (B, C, H, W) in [0, 1]. Needs ``reconstruction=True``."""
        if self.decoder is None:
            raise ValueError("reconstruct() needs a CapsNet built with reconstruction=True")
        if y is None:
            y = v.norm(dim=-1).argmax(dim=1)
        mask = F.one_hot(y, v.shape[1]).to(v.dtype).unsqueeze(-1)
        return self.decoder((v * mask).flatten(1)).view(-1, *self.input_shape)

    def primary_capsules(self, x: torch.Tensor) -> torch.Tensor:
        """Squashed primary capsules, shape (B, num_primary, primary_dim)."""
        z = self.act1(self.conv1(self.stem(self.pixels(x))))
        p = self.primary_conv(z)  # (B, types*dim, H', W')
        b, _, ph, pw = p.shape
        # Group channels into capsules: (B, types, dim, H', W') -> (B, types*H'*W', dim).
        u = p.view(b, -1, self.primary_dim, ph, pw).permute(0, 1, 3, 4, 2).reshape(b, -1, self.primary_dim)
        return self.primary_caps(squash(u))

    #: Bytes the routing of one batch may use (int or "8GB"; None: ``$REPROBUST_MEMORY_BUDGET`` or no
    #: limit). The prediction vectors û alone are B × primaries × classes × 16 floats — 65.5 GB for one
    #: generation of the black-box attack on CIFAR-10 (500 images × 100 candidates) — so the batch is
    #: routed in chunks that fit. Each image is routed independently: chunking never changes the result.
    memory_budget = None

    def extra_forward_bytes(self, x: torch.Tensor) -> int:
        """Bytes per image of the routing work that is not a module output (for :mod:`reprobust.memory`):
        û, its output-major copy and two routing temporaries of the same size."""
        n_out, d = self.weight.shape[1], self.weight.shape[2]
        return 4 * self.num_primary * n_out * d * 4

    def capsules(self, x: torch.Tensor) -> torch.Tensor:
        """Class capsules ``v``, shape (B, num_classes, class_dim); their lengths are class probabilities."""
        from ..memory import items_per_chunk

        u = self.primary_capsules(x)
        step = items_per_chunk(self.extra_forward_bytes(x), self.memory_budget, total=len(u))
        # Only the routing is chunked: the hook points (primary_caps, class_caps) still fire once.
        v = torch.cat([self._route(ub) for ub in torch.split(u, step)]) if step < len(u) else self._route(u)
        return self.class_caps(v)

    def _route(self, u: torch.Tensor) -> torch.Tensor:
        # (B, n_in, n_out, D) is the fast einsum layout; routing wants output capsules first. The
        # transposed view goes to the batched matmuls as it is: a contiguous copy gives bit-identical
        # results (forward and gradients) and costs ~13% of the routing time on CPU.
        u_hat = torch.einsum("ijdk,bik->bijd", self.weight, u).transpose(1, 2)
        v, _ = dynamic_routing(u_hat, self.routing_iterations, detach_intermediate=self.detach_routing)
        return v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``log(‖v_c‖ + eps)``, shape (B, num_classes); softmax = lengths / Σ lengths."""
        lengths = self.capsules(x).norm(dim=-1)
        return torch.log(lengths + LENGTH_EPS)
