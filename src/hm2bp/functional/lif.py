r"""Discrete-time LIF simulator of the official HM2-BP program (spec §1.2).

Time-first layout: currents and spikes are ``[T, B, N]``.

Per neuron there are two state variables, the synaptic trace :math:`\epsilon` and the
membrane :math:`v`, both starting at 0. For :math:`t = 0 \dots T-1`:

.. math::

    v &\leftarrow v\,(1 - 1/\tau_m),\qquad \epsilon \leftarrow \epsilon\,(1 - 1/\tau_s)
        &&\text{(leak; at } t=0 \text{ stop here: no spike at } t=0)\\
    \epsilon &\leftarrow \epsilon + I[t] + W_{lat}\, s[t-1]
        &&\text{(input, delivered with a 1-step delay)}\\
    v &\leftarrow v + \epsilon/\tau_s &&\text{(integrate)}\\
    v &\leftarrow 0 \text{ while refractory} &&\text{(clamp for } T_{ref} \text{ steps)}\\
    s[t] &= [v > \nu - \varepsilon_\nu];\ v \leftarrow 0 \text{ on a spike} &&\text{(fire, reset } v \text{ only)}

``I[t]`` is the feed-forward current already delayed by the caller (``I[t] = W s_{in}[t-1]``).
Only the membrane is reset; the synaptic trace keeps flowing.
"""
from __future__ import annotations

import torch
from torch import Tensor

from hm2bp.functional._threads import single_thread


def lif_simulate(
    current: Tensor,
    threshold: float,
    *,
    tau_m: float = 64.0,
    tau_s: float = 8.0,
    refractory: int = 2,
    lateral: Tensor | None = None,
    threshold_eps: float = 1e-6,
) -> Tensor:
    """Simulate LIF neurons driven by a delayed input current.

    Args:
        current: ``[T, B, N]`` feed-forward current added to the synaptic trace at each step
            (``current[t] = W s_in[t-1]``; ``current[0]`` is ignored, spec §1.2 step 1).
        threshold: firing threshold :math:`\\nu`.
        tau_m, tau_s: membrane and synaptic time constants in steps (official: 64, 8).
        refractory: :math:`T_{ref}` in steps (official: 2); ``v`` is clamped to 0 for this many
            steps after a spike, so the minimum inter-spike interval is ``refractory + 1``.
        lateral: optional ``[N, N]`` matrix ``W_lat[post, pre]`` applied to the layer's own spikes
            at ``t-1`` (spec §3.5, §10.2); output inhibition is ``-w0 (1 - I)``.
        threshold_eps: a spike needs ``v > threshold - threshold_eps`` (official FC/pool: 1e-6,
            conv: 0).

    Returns:
        ``[T, B, N]`` bool spike trains.
    """
    T = current.shape[0]
    state_shape = current.shape[1:]
    spikes = torch.zeros(current.shape, dtype=torch.bool, device=current.device)
    v = current.new_zeros(state_shape)
    ep = current.new_zeros(state_shape)
    leak_m = 1.0 - 1.0 / tau_m
    leak_s = 1.0 - 1.0 / tau_s
    theta = threshold - threshold_eps
    lat_t = lateral.t() if lateral is not None else None
    with single_thread(current.device):
        for t in range(1, T):
            ep.mul_(leak_s).add_(current[t])
            if lat_t is not None and t > 1:
                ep.add_(spikes[t - 1].to(ep.dtype) @ lat_t)
            v.mul_(leak_m).add_(ep, alpha=1.0 / tau_s)
            if refractory > 0 and t > 1:
                # clamped while a spike fell within the last T_ref steps (counter of §1.2 step 4)
                v.masked_fill_(spikes[max(1, t - refractory) : t].any(0), 0.0)
            torch.gt(v, theta, out=spikes[t])
            v.masked_fill_(spikes[t], 0.0)
    return spikes
