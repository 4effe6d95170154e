r"""Discrete-time LIF simulator of the official HM2-BP program (``docs/algorithm.md``, "Neuron model").

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

from hm2bp.functional.params import LIFParams
from hm2bp.functional.scan_backend import use_triton


class LIFScan:
    r"""The LIF dynamics of ``docs/algorithm.md`` ("Neuron model") stepped block by block, writing
    into a preallocated spike tensor.

    ``spikes`` ``[T, ...]`` bool receives the output; ``neuron`` holds the constants; feed the current in consecutive blocks with
    :meth:`run` (``current[t]`` for ``t = t0 .. t0 + L - 1``). The state carried between blocks
    is ``(epsilon, v)`` and the last ``T_ref`` spike rows; ``counts`` accumulates the spike
    counts (exact integers in float).

    The membrane is stepped in float arithmetic (float compare/multiply kernels are several times
    faster than bool masks on CPU) and scaled by :math:`\tau_s`, :math:`u = \tau_s v`, so each
    update is a single fused kernel:

    .. math::

        \epsilon \leftarrow (1-1/\tau_s)\,\epsilon + I[t] (+ W_{lat} s_{t-1}),\qquad
        u \leftarrow \big((1-1/\tau_m)\,u + \epsilon\big)(1 - w_t),\qquad
        s_t = [u > \tau_s(\nu - \varepsilon_\nu)],

    where :math:`w_t = \sum_{k=1}^{T_{ref}} s_{t-k}` counts spikes in the last ``T_ref`` steps (at
    most one: the inter-spike interval exceeds ``T_ref``), so :math:`(1 - w_t)` is the refractory
    clamp and the reset at a spike is implied (the clamp at ``t + 1`` zeroes ``u`` whatever its
    value). With ``T_ref = 0`` the reset is applied explicitly. For the official
    :math:`\tau_s = 8` the scaling by a power of two is exact.

    Under the Triton backend (``neuron.scan_backend``, ``scan_backend.py``) each :meth:`run` is one
    fused kernel over the block (``triton_lif``; :attr:`fused`), with the same spikes.
    """

    def __init__(
        self,
        spikes: Tensor,
        neuron: LIFParams,
        *,
        lateral: Tensor | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        tau_m, tau_s = neuron.tau_m, neuron.tau_s
        self.spikes = spikes
        state_shape = spikes.shape[1:]
        self.v = torch.zeros(state_shape, dtype=dtype, device=spikes.device)
        self.ep = torch.zeros_like(self.v)
        self.recent = torch.zeros_like(self.v)  # w_t: spikes within the last T_ref steps
        self.counts = torch.zeros_like(self.v)  # spikes so far per neuron
        self.leak_m = 1.0 - 1.0 / tau_m
        self.leak_s = 1.0 - 1.0 / tau_s
        self.theta = (neuron.threshold - neuron.threshold_eps) * tau_s  # threshold of u = tau_s v
        self.refractory = int(neuron.refractory)
        self.lat_t = lateral.t().to(dtype) if lateral is not None else None
        # float spike rows of the previous T_ref steps (t < 1: none)
        self.history = torch.zeros((max(self.refractory, 1), *state_shape), dtype=dtype, device=spikes.device)
        self._rows: Tensor | None = None  # float spike rows of a block, after H rows of history
        self.fused = use_triton(neuron.scan_backend, self.v)
        if self.fused:
            from hm2bp.functional import triton_lif

            if lateral is not None and not triton_lif.fits_lateral(lateral.shape[0]):
                self.fused = False  # one program per sample cannot hold this layer: eager
            else:
                self._triton = triton_lif
                self.countdown, self.prev = triton_lif.empty_state(self.v.reshape(-1).shape, self.v.device)
                self.lat_c = self.lat_t.contiguous() if self.lat_t is not None else None

    def run(self, t0: int, current: Tensor) -> None:
        """Advance over ``current`` ``[L, ...]`` = the input current at times ``t0 .. t0+L-1``."""
        first = max(t0, 1)  # t = 0: leak of the zero state only, never a spike
        if first >= t0 + current.shape[0]:
            return
        current = current[first - t0 :]
        if self.fused:
            self._run_fused(first, current)
            return
        L, R = current.shape[0], self.refractory
        H = self.history.shape[0]  # rows of earlier steps kept in front of the block
        if self._rows is None or self._rows.shape[0] < H + L:  # reused: fresh pages cost a fault each
            self._rows = torch.empty((H + L, *self.v.shape), dtype=self.v.dtype, device=self.v.device)
        rows = self._rows[: H + L]
        rows[:H] = self.history
        u, ep, recent = self.v, self.ep, self.recent
        inputs, spike_rows = current.unbind(0), rows.unbind(0)  # per-step views made once
        for k in range(L):
            torch.add(inputs[k], ep, alpha=self.leak_s, out=ep)
            if self.lat_t is not None:
                ep.addmm_(spike_rows[H + k - 1], self.lat_t)  # the layer's own spikes at t - 1
            torch.add(ep, u, alpha=self.leak_m, out=u)
            s = spike_rows[H + k]
            if R > 0:
                u.addcmul_(u, recent, value=-1.0)  # clamp: u (1 - w_t)
                torch.gt(u, self.theta, out=s)
                if R == 1:
                    recent.copy_(s)
                elif R == 2:
                    torch.add(s, spike_rows[H + k - 1], out=recent)
                else:
                    recent.add_(s).sub_(spike_rows[H + k - R])
            else:
                torch.gt(u, self.theta, out=s)
                u.addcmul_(u, s, value=-1.0)  # reset on a spike
        self.spikes[first : first + L].copy_(rows[H:])
        self.counts += rows[H:].sum(0)
        self.history.copy_(rows[L:])

    def _run_fused(self, first: int, current: Tensor) -> None:
        """:meth:`run` from step ``first`` as one Triton kernel over the block."""
        L = current.shape[0]
        target = self.spikes[first : first + L]
        direct = target.is_contiguous()  # write the bool trains in place; else through a buffer
        out = target.view(torch.uint8).view(L, -1) if direct else torch.empty((L, self.v.numel()), dtype=torch.uint8,
                                                                                 device=self.v.device)
        self._triton.lif_steps(current.reshape(L, -1).contiguous(), out, self.ep.view(-1), self.v.view(-1),
                               self.countdown, self.prev, self.counts.view(-1), self.lat_c, leak_s=self.leak_s,
                               leak_m=self.leak_m, theta=self.theta, refractory=self.refractory)
        if not direct:
            target.copy_(out.view(target.shape).view(torch.bool))


def lif_simulate(current: Tensor, neuron: LIFParams | float, *, lateral: Tensor | None = None,
                 block: int = 64) -> Tensor:
    """Simulate LIF neurons driven by a delayed input current.

    Args:
        current: ``[T, B, N]`` feed-forward current added to the synaptic trace at each step
            (``current[t] = W s_in[t-1]``; ``current[0]`` is ignored).
        neuron: the neurons' constants (:class:`LIFParams`: threshold :math:`\\nu`, ``tau_m``,
            ``tau_s``, ``refractory``, ``threshold_eps``); a bare number is the threshold with the
            official other constants. ``v`` is clamped to 0 for ``refractory`` steps after a
            spike, so the minimum inter-spike interval is ``refractory + 1``.
        lateral: optional ``[N, N]`` matrix ``W_lat[post, pre]`` applied to the layer's own spikes
            at ``t-1`` ("Lateral inhibition"); output inhibition is ``-w0 (1 - I)``.
        block: time steps per call of :meth:`LIFScan.run`.

    Returns:
        ``[T, B, N]`` bool spike trains.
    """
    spikes = torch.zeros(current.shape, dtype=torch.bool, device=current.device)
    scan = LIFScan(spikes, LIFParams.of(neuron, "lif_simulate"), lateral=lateral, dtype=current.dtype)
    for t0 in range(0, current.shape[0], block):
        scan.run(t0, current[t0 : t0 + block])
    return spikes
