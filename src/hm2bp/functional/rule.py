r"""The factors of the HM2-BP rule that are not S-PSP sums (``docs/algorithm.md``, "Weight update",
"Lateral inhibition"): spike counts, target injection, the lateral factor ``gamma``, the side
effect ``sigma`` and the weight-norm regulariser. Shared by the fully connected and conv backward.
"""
from __future__ import annotations

import torch
from torch import Tensor

from hm2bp.functional.current import as_uint8
from hm2bp.functional.params import HM2BPRule, LIFParams
from hm2bp.functional.spsp import adjoint_trace


def spike_counts(spikes: Tensor, dtype: torch.dtype, chunk: int = 32) -> Tensor:
    """``spikes.sum(0)`` in ``dtype`` for 0/1 trains ``[T, ...]``, accumulated over chunks of steps.

    Exact (integer counts; float32 holds them exactly below 2^24). Summing a uint8/bool tensor directly first
    materialises an int64 copy of the whole ``[T, ...]`` tensor (8 bytes per element: at T = 400,
    B = 64, N = 784 that is 160 MB and ~0.1 s); per chunk the temporary is ``chunk`` steps only.
    """
    out = torch.zeros(spikes.shape[1:], dtype=dtype, device=spikes.device)
    for part in as_uint8(spikes).split(chunk):
        out += part.sum(0, dtype=dtype)
    return out


def inject_target(post: Tensor, counts: Tensor, target: Tensor, desired: float, refractory: int) -> Tensor:
    """Replace a silent target's train by regular spikes at ``m * floor(T / desired)``, m >= 1.

    ``post`` ``[T, B, N]``, ``counts`` ``[B, N]``, ``target`` ``[B]`` (``docs/algorithm.md``, "Weight
    update", target injection; for
    T = 400 and desired 35: 36 spikes at 11, 22, ..., 396). The spacing is at least
    ``refractory + 1`` so the train stays a valid LIF output.
    """
    T = post.shape[0]
    rows = torch.arange(post.shape[1], device=post.device)
    silent = counts[rows, target] == 0
    if not bool(silent.any()):
        return post
    spacing = max(int(T // desired), refractory + 1)
    train = torch.zeros(T, dtype=post.dtype, device=post.device)
    train[spacing::spacing] = 1
    post = post.clone()
    b = rows[silent]
    post[:, b, target[silent]] = train[:, None].expand(T, int(b.numel()))
    return post


def lateral_factor(post: Tensor, counts: Tensor, target: Tensor | None, neuron: LIFParams, rule: HM2BPRule) -> Tensor:
    """Lateral factor ``gamma`` ``[B, N]`` of an inhibited output layer (``docs/algorithm.md``, "Lateral inhibition").

    ``e`` between output trains is materialised (``[B, N, N]``, small: N = classes).
    ``d_k = 1/nu`` if ``o_k > 0`` or ``k`` is the target, else 0; ratios are 1 if a count is 0.
    """
    q = adjoint_trace(post, neuron.psp_kernel, counts.dtype)
    e = torch.einsum("tbi,tbj->bij", q, post.to(counts.dtype))  # e[b, l, i]: post l, pre i
    o = counts
    both = (o[:, :, None] > 0) & (o[:, None, :] > 0)  # [B, l, i]
    ratio = torch.where(both, e / o[:, None, :].clamp(min=1), torch.ones_like(e))  # e_{l|i} / o_i
    pair = ratio * ratio.transpose(1, 2)  # (e_{l|i}/o_i)(e_{i|l}/o_l), symmetric
    active = o > 0
    if target is not None:
        active = active.clone()
        active[torch.arange(o.shape[0], device=o.device), target] = True
    d = active.to(o.dtype) / neuron.threshold  # [B, N]
    eye = torch.eye(o.shape[1], dtype=torch.bool, device=o.device)
    pair = pair.masked_fill(eye, 0.0)
    s = d * (pair * d[:, :, None]).sum(1)  # sum over l != i of d_l d_i pair[l, i]
    # The geometric series behind gamma converges only for w0^2 s < 1; past that the official formula
    # gives an infinite or negative factor (a sign flip of the whole gradient row). Cap gamma at
    # rule.max_lateral_factor instead (a deviation that never triggers in the golden cases).
    denom = (1.0 - rule.lateral_inhibition**2 * s).clamp(min=1.0 / rule.max_lateral_factor)
    return 1.0 / denom


def regulariser_grad(weight: Tensor, rule: HM2BPRule) -> Tensor:
    r"""Gradient of the weight-norm regulariser ("Weight update"), per post neuron :math:`i`:

    :math:`\lambda\beta\,(w_{ij}/L)\,\exp(\beta(S_i - 1))`, :math:`S_i = \mathrm{mean}_j (w_{ij}/L)^2`.
    """
    if rule.reg_lambda == 0.0 or rule.reg_beta == 0.0:
        return torch.zeros_like(weight)
    wl = weight / rule.reg_limit
    s = (wl * wl).mean(dim=tuple(range(1, weight.dim())), keepdim=True)
    return rule.reg_lambda * rule.reg_beta * wl * torch.exp(rule.reg_beta * (s - 1.0))


def side_effect(a_ff: Tensor, o: Tensor, silent_sigma: Tensor, threshold: float) -> Tensor:
    """Side effect ``sigma = a_ff / (nu o)`` (``threshold`` is ``nu``), the silent constant where
    ``o = 0`` ("Weight update")."""
    return torch.where(o > 0, a_ff / (threshold * o.clamp(min=1)), silent_sigma)
