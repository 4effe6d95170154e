r"""HM2-BP macro/micro backward for one spiking layer (``docs/algorithm.md``, "Weight update").

Given the layer's input and output spike trains and :math:`g_i = \partial E/\partial o_i` per
sample, with :math:`\delta_i = g_i/\nu`, the rule is

.. math::

    \frac{\partial E}{\partial w_{ij}} &= \sum_b \delta_{bi}\, e_{b,i|j}\,(1+\sigma_{bi})\,\gamma_{bi}
        &&\text{(weight gradient)}\\
    \sigma_i &= \frac{1}{\nu}\sum_l w_{il}\, r_{il},\quad r_{il} = e_{i|l}/o_i\ (o_i>0),\ 0.5\ (o_i=0)
        &&\text{(side effect)}\\
    g^{prev}_j &= \sum_i \delta_i\, w_{ij}\, \rho_{ij},\quad \rho_{ij} = e_{i|j}/o_j\ (o_i,o_j>0),\ 1\ \text{otherwise}
        &&\text{(effect ratio, error to the inputs)}\\
    \gamma_i &= \Big(1 - w_0^2 \sum_{l\ne i} d_i d_l\, \tfrac{e_{l|i}}{o_i}\tfrac{e_{i|l}}{o_l}\Big)^{-1}
        &&\text{(lateral factor, "Lateral inhibition")}

with the silent-post constant :math:`e_{i|j} = 0.1` when :math:`o_i = 0 < o_j` ("Spike-train-level PSP").
The rule's per-neuron factors live in ``rule.py``. The S-PSP matrices come from the post-side
adjoint trace :math:`Q` and the 0/1 input spikes,
:math:`E_b = Q_b^\top S_b` (``spsp.adjoint_trace``), gathered event by event over the input
spikes (``spsp.spsp_from_trace``: ``nnz(S) N_out`` additions). They are formed for a block of
samples at a time (``group``), so memory stays ``O(group N_in N_out + T group N_out)`` whatever the
batch, and every factor of the rule is then a reduction of the block.

The backward runs in three parts: :func:`prepare_backward` (counts, target injection, ``delta``,
``gamma``, path, block size), then per block of samples :func:`block_weight_grad` and
:func:`block_input_error`; :func:`hm2bp_backward` chains them on one :class:`LinearForward` record.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from hm2bp.functional.blocks import sample_group
from hm2bp.functional.current import MAX_SPARSE_DENSITY, as_uint8
from hm2bp.functional.params import HM2BPRule, LIFParams
from hm2bp.functional.rule import inject_target, lateral_factor, regulariser_grad, side_effect, spike_counts
from hm2bp.functional.spsp import InputEvents, ResetEvents, adjoint_trace, reset_events, spsp_from_trace

# Without an input error, the trace path costs ~2 nnz(S) N_out gathered additions, the S-PSP-matrix
# path ~nnz(S) N_out plus passes over B N_in N_out that do not shrink with T; the trace path is
# measured faster below about this many spikes per input train (784-800-10 at p = 0.03: 2.5x
# faster at T = 50, 4 % slower at T = 400; docs/benchmarks.md, "Choosing the backward path").
TRACE_MAX_SPIKES_PER_INPUT = 8.0
CHUNK = 64  # inputs per chunk of the element-wise reductions over an S-PSP block (kept in cache)
PATHS = ("auto", "matrix", "trace")  # "matrix": per-sample S-PSP matrices of a block; "trace": none


@dataclass(frozen=True)
class LinearForward:
    """What the forward pass of one fully connected layer hands its backward (time-first).

    ``pre`` ``[T, B, N_in]`` input spikes and ``post`` ``[T, B, N_out]`` output spikes (0/1, any
    dtype); the rest is optional, found from the trains when absent: the spike counts
    ``counts_in`` ``[B, N_in]`` / ``counts_out`` ``[B, N_out]``, ``pre`` as
    :class:`~hm2bp.functional.spsp.InputEvents`, the ascending flat indices of ``post``'s spikes,
    and the labels ``target`` ``[B]`` (target injection, lateral factor).
    """

    pre: Tensor
    post: Tensor
    counts_in: Tensor | None = None
    counts_out: Tensor | None = None
    pre_events: InputEvents | None = None
    post_index: Tensor | None = None
    target: Tensor | None = None


@dataclass
class BackwardPlan:
    """The batch-wide quantities of one layer's backward (:func:`prepare_backward`), shared by its blocks.

    ``neuron`` is the layer's neuron record (``nu``, the S-PSP kernel); ``post`` is the output
    train after target injection and ``o_out`` its counts; ``delta = g / nu``,
    ``gamma`` the lateral factor (or ``None``), ``silent_sigma`` the side effect of silent posts
    (or ``None`` without the side effect); ``pre_events`` the input events (``None`` for a dense
    input); ``by_trace`` whether the blocks skip the per-sample S-PSP matrices; ``group`` samples per
    block; ``events`` the reset events of ``post``; the rest are work buffers reused by every block.
    """

    neuron: LIFParams
    pre: Tensor
    post: Tensor
    o_in: Tensor
    o_out: Tensor
    delta: Tensor
    gamma: Tensor | None
    silent_out: Tensor
    silent_sigma: Tensor | None
    pre_events: InputEvents | None
    by_trace: bool
    group: int
    events: ResetEvents
    workspace: Tensor
    w_buf: Tensor | None
    chunk_buf: Tensor | None

    def blocks(self):
        """Slices of ``group`` samples covering the batch."""
        B = self.post.shape[1]
        for b0 in range(0, B, self.group):
            yield slice(b0, min(b0 + self.group, B))


def prepare_backward(forward: LinearForward, weight: Tensor, grad_counts: Tensor, neuron: LIFParams, rule: HM2BPRule,
                     *, bias: Tensor | None, need_input_grad: bool, path: str, group: int | None,
                     memory_budget: int) -> BackwardPlan:
    """Everything of the rule that is per sample and neuron (counts, target injection, ``delta``,
    ``gamma``, the silent-post side effect), the path, the block size and the buffers; the
    arguments are those of :func:`hm2bp_backward`."""
    pre, post, post_index = forward.pre, forward.post, forward.post_index
    dtype = weight.dtype
    T, B = post.shape[:2]
    counts_raw = forward.counts_out.to(dtype) if forward.counts_out is not None else spike_counts(post, dtype)
    o_in = forward.counts_in.to(dtype) if forward.counts_in is not None else spike_counts(pre, dtype)  # [B, N_in]
    target = forward.target
    gamma = None
    if rule.lateral_factor and rule.lateral_inhibition != 0.0:
        gamma = lateral_factor(post.to(dtype), counts_raw, target, neuron, rule)
    if rule.target_injection is not None and target is not None:
        injected = inject_target(post, counts_raw, target, rule.target_injection, neuron.refractory)
    else:
        injected = post
    # inject_target returns its input when no target was silent: the counts are unchanged then
    o_out = counts_raw if injected is post else spike_counts(injected, dtype)
    if injected is not post:
        post_index = None  # the injected trains have other spikes
    post = injected
    delta = grad_counts.to(dtype) / neuron.threshold  # [B, N_out]
    silent_out = (o_out == 0).to(dtype)  # 1 where a post neuron fired no spike
    silent_sigma = None
    if rule.side_effect:
        silent_sigma = rule.silent_side_ratio * weight.sum(1) / neuron.threshold  # [N_out]
        if bias is not None:
            silent_sigma = silent_sigma + rule.silent_side_ratio * bias / neuron.threshold
    pre_events = forward.pre_events
    if pre_events is None:  # count first: a dense input needs no event list
        density = int(torch.count_nonzero(as_uint8(pre))) / max(1, pre.numel())
        pre_events = InputEvents.from_spikes(pre) if density <= MAX_SPARSE_DENSITY else None
    else:
        density = pre_events.density()
    n_out = post[0, 0].numel()
    # Without an error to the inputs, the rule needs only a_ff and the coefficient-weighted sum of
    # e over samples: both contract Q with the input events directly ("trace" path), with no
    # per-sample [N_in, N_out] S-PSP matrix (whose cost does not shrink with T).
    if path == "spsp":  # the old name of "matrix"
        path = "matrix"
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    can_trace = not need_input_grad and pre_events is not None
    if path == "trace" and not can_trace:
        raise ValueError("path='trace' needs need_input_grad=False and sparse input spikes")
    by_trace = path == "trace" or (path == "auto" and can_trace and density * T < TRACE_MAX_SPIKES_PER_INPUT)
    per_sample = 3 * T * n_out  # the two scans' workspace (+ the trace path's current chunks)
    if not by_trace:  # e_b, and w_ij e_{i|j} when the error to the inputs needs it
        per_sample += (2 if need_input_grad and rule.effect_ratio else 1) * weight.numel()
    group = sample_group(B, per_sample, weight.element_size(), memory_budget, group)
    kernel = neuron.psp_kernel
    events = reset_events(post, kernel, dtype, index=post_index)  # once for the batch, sliced per block
    # buffers reused by every block (fresh multi-MB tensors per block cost page faults)
    workspace = torch.empty(2 * (T + kernel.shift) * group * n_out, dtype=dtype, device=weight.device)
    n_in = weight.shape[1]
    w_buf = None  # w_ij e_{i|j} of a block, when the error to the inputs needs it whole
    if not by_trace and need_input_grad and rule.effect_ratio:
        w_buf = torch.empty(group * n_in * n_out, dtype=dtype, device=weight.device)
    chunk_buf = None if by_trace else torch.empty(group * min(n_in, CHUNK) * n_out, dtype=dtype, device=weight.device)
    return BackwardPlan(neuron, pre, post, o_in, o_out, delta, gamma, silent_out, silent_sigma, pre_events, by_trace, group,
                        events, workspace, w_buf, chunk_buf)


def block_weight_grad(
    plan: BackwardPlan,
    rows: slice,
    weight_t: Tensor,
    rule: HM2BPRule,
    grad_wt: Tensor,
    grad_b: Tensor | None,
    *,
    bias: Tensor | None,
    need_input_grad: bool,
) -> Tensor | None:
    """Add one block's weight (and bias) gradient, ``sum_b delta_i e_{b,i|j} (1 + sigma_i) gamma_i``
    plus the silent-post term, to ``grad_wt`` ``[N_in, N_out]`` (and ``grad_b``).

    Returns ``w_ij e_{i|j}`` ``[g, N_in, N_out]`` when the error to the inputs needs it (the matrix
    path forms it once for the side effect and the error), else ``None``.
    """
    n_out = plan.post[0, 0].numel()
    g = rows.stop - rows.start
    block_events = plan.events.neurons(rows.start * n_out, rows.stop * n_out)
    q = adjoint_trace(plan.post[:, rows], plan.neuron.psp_kernel, weight_t.dtype, events=block_events,
                      workspace=plan.workspace)  # [T, g, N_out]
    sparse_pre = plan.pre_events is not None
    block_pre = plan.pre_events.samples(rows.start, rows.stop) if sparse_pre else plan.pre[:, rows]
    e_bias = q.sum(0) if bias is not None else None  # the always-on input (fires at every step)
    coef = plan.delta[rows]
    if plan.gamma is not None:
        coef = coef * plan.gamma[rows]
    weighted = None  # w_ij e_{i|j}, shared by the side effect and the error to the inputs
    if plan.by_trace:
        if rule.side_effect:
            a_ff = _trace_dot_current(q, block_pre, weight_t)  # sum_s Q[s] (W s[s]): T-PSP of the synapses
            if bias is not None:
                a_ff = a_ff + bias * e_bias
            coef = coef * (1.0 + side_effect(a_ff, plan.o_out[rows], plan.silent_sigma, plan.neuron.threshold))
        grad_wt += _events_weighted_trace(q.mul_(coef), block_pre)  # sum_b coef[b, i] e_{b, i|j}
    else:
        e_t = spsp_from_trace(q, block_pre)  # [g, N_in, N_out]: e_t[b, j, i] = e_{b, i|j}
        if need_input_grad and rule.effect_ratio:
            weighted = torch.mul(e_t, weight_t, out=plan.w_buf[: g * weight_t.numel()].view(e_t.shape))
        if rule.side_effect:
            # [g, N_out]: T-PSP of the feed-forward synapses
            a_ff = weighted.sum(1) if weighted is not None else _weighted_rows(e_t, weight_t, plan.chunk_buf)
            if bias is not None:
                a_ff = a_ff + bias * e_bias
            coef = coef * (1.0 + side_effect(a_ff, plan.o_out[rows], plan.silent_sigma, plan.neuron.threshold))
        _add_sample_weighted(grad_wt, e_t, coef, plan.chunk_buf)  # sum_b coef[b, i] e_t[b, j, i]
        del e_t
    del q
    silent_coef = coef * plan.silent_out[rows]  # silent posts: e = silent_spsp per active pre
    grad_wt += rule.silent_spsp * (plan.o_in[rows] > 0).to(weight_t.dtype).t() @ silent_coef
    if grad_b is not None:
        grad_b += (e_bias * coef).sum(0) + rule.silent_spsp * silent_coef.sum(0)
    return weighted


def block_input_error(plan: BackwardPlan, rows: slice, weight: Tensor, weighted: Tensor | None,
                      rule: HM2BPRule) -> Tensor:
    """``dE/do`` of one block's input counts ``[g, N_in]``: ``sum_i delta_i w_ij rho_ij`` with
    ``rho_ij = e_{i|j} / o_j`` (``weighted`` holds ``w_ij e_{i|j}``), ``rho = 1`` where a count is 0;
    plain ``sum_i delta_i w_ij`` without the effect ratio. Neither ``sigma`` nor ``gamma`` enters."""
    d = plan.delta[rows]
    if not rule.effect_ratio:
        return d @ weight
    h = torch.bmm(weighted, d.unsqueeze(-1)).squeeze(-1)  # sum_i delta_i w_ij e_{i|j}
    o_j = plan.o_in[rows]
    from_silent = (d * plan.silent_out[rows]) @ weight  # rho = 1 where o_i = 0
    return torch.where(o_j > 0, h / o_j.clamp(min=1) + from_silent, d @ weight)


def hm2bp_backward(
    forward: LinearForward,
    weight: Tensor,
    grad_counts: Tensor,
    neuron: LIFParams,
    rule: HM2BPRule,
    *,
    bias: Tensor | None = None,
    need_input_grad: bool = True,
    path: str = "auto",
    group: int | None = None,
    memory_budget: int = 64 * 2**20,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """HM2-BP gradients of one fully connected spiking layer (``docs/algorithm.md``, "Weight update").

    Args:
        forward: the layer's forward record (:class:`LinearForward`: input and output trains,
            optional counts, input events, output spike index and labels).
        weight: ``[N_out, N_in]`` feed-forward weights (pre-update).
        grad_counts: ``[B, N_out]`` ``dE/do`` of this layer's output counts.
        neuron: the layer's neuron record (``nu``: ``delta = g / nu``; the S-PSP kernel).
        rule: the learning-rule record.
        bias: optional ``[N_out]`` bias, modelled as a synapse from an input that fires at
            every step (its weight gradient uses the same S-PSP rule).
        need_input_grad: also return ``dE/do`` of the input counts.
        path: ``"matrix"`` forms the per-sample S-PSP matrices of a block and reduces them;
            ``"trace"`` (only without ``need_input_grad``, sparse inputs) contracts the adjoint
            trace with the input events twice (the side-effect T-PSP against the re-gathered
            current, then the coefficient-weighted trace), with no per-sample matrix;
            ``"auto"`` picks ``"trace"`` when allowed and the inputs have fewer than
            ``TRACE_MAX_SPIKES_PER_INPUT`` spikes per train. Same gradients either way.
        group: samples per block. Per block the S-PSP matrices ``e_b`` ``[group, N_in, N_out]``
            are formed from the adjoint trace and the input events (``spsp_from_trace``); every
            term of the rule is then a cheap reduction of them. A block holds ``3 T group N_out``
            floats for the trace and ``group N_in N_out`` for ``e``. By default the block is as
            large as ``memory_budget`` bytes allow, so the backward's working memory does not
            grow with ``T`` or ``B`` (only the number of blocks does).

    Returns:
        ``(grad_weight [N_out, N_in], grad_input_counts [B, N_in] or None, grad_bias or None)``.
        Weight gradients are summed over the batch; the regulariser is added once per
        sample (``B`` times), as the official per-sample updates do.
    """
    plan = prepare_backward(forward, weight, grad_counts, neuron, rule, bias=bias, need_input_grad=need_input_grad,
                            path=path, group=group, memory_budget=memory_budget)
    B = plan.post.shape[1]
    weight_t = weight.t().contiguous()  # [N_in, N_out]; gathered by row and read in row chunks
    grad_wt = torch.zeros_like(weight_t)  # [N_in, N_out]
    grad_b = torch.zeros_like(bias) if bias is not None else None
    grad_in = torch.empty(B, weight.shape[1], dtype=weight.dtype, device=weight.device) if need_input_grad else None
    for rows in plan.blocks():
        weighted = block_weight_grad(plan, rows, weight_t, rule, grad_wt, grad_b, bias=bias,
                                     need_input_grad=need_input_grad)
        if need_input_grad:
            grad_in[rows] = block_input_error(plan, rows, weight, weighted, rule)
        del weighted
    grad_w = grad_wt.t() + B * regulariser_grad(weight, rule)
    return grad_w, grad_in, grad_b


def _trace_dot_current(q: Tensor, pre: InputEvents, weight_t: Tensor, chunk: int = 32) -> Tensor:
    r"""``a[b, i] = sum_s Q[s, b, i] (W s_b[s])_i`` ``[B, N_out]``: the current ``W s[s]`` is
    gathered again from the input events, ``chunk`` steps at a time (never ``[T, B, N_out]``)."""
    T, B, n_out = q.shape
    key = pre.s * B + pre.b  # (step, sample) rows, as the forward gathered them
    key, order = torch.sort(key)
    cols = pre.j[order]
    bounds = torch.searchsorted(key, torch.arange(0, T * B + 1, B, dtype=key.dtype, device=key.device))
    out = torch.zeros(B, n_out, dtype=q.dtype, device=q.device)
    for t0 in range(0, T, chunk):
        t1 = min(t0 + chunk, T)
        i0, i1 = int(bounds[t0]), int(bounds[t1])
        if i0 == i1:
            continue
        offsets = torch.searchsorted(key[i0:i1], torch.arange(t0 * B, t1 * B, dtype=key.dtype, device=key.device))
        offsets = offsets.to(cols.dtype)
        cur = F.embedding_bag(cols[i0:i1], weight_t, offsets, mode="sum")  # [(t1 - t0) B, N_out]
        out += (q[t0:t1].reshape(-1, n_out) * cur).view(t1 - t0, B, n_out).sum(0)
    return out


def _events_weighted_trace(p: Tensor, pre: InputEvents) -> Tensor:
    r"""``G[j, i] = sum_{b, s} S[s, b, j] P[s, b, i]`` ``[N_in, N_out]`` for ``P = coef ⊙ Q``: one
    gather over the input events, bagged by input."""
    T, B, n_out = p.shape
    n_in = pre.shape[-1]
    j, order = torch.sort(pre.j)
    rows = (pre.s * B + pre.b)[order]
    offsets = torch.zeros(n_in, dtype=rows.dtype, device=p.device)
    offsets[1:] = torch.bincount(j, minlength=n_in)[:-1].cumsum(0)
    return F.embedding_bag(rows, p.reshape(T * B, n_out), offsets, mode="sum")


def _weighted_rows(e_t: Tensor, weight_t: Tensor, buf: Tensor, chunk: int = CHUNK) -> Tensor:
    """``sum_j e_t[b, j, i] w_t[j, i]`` ``[B, N_out]``: products of ``chunk`` inputs at a time are
    accumulated in a cache-sized buffer, then summed once (no ``[B, N_in, N_out]`` temporary)."""
    B, n_in, n_out = e_t.shape
    width = min(chunk, n_in)
    acc = buf[: B * width * n_out].view(B, width, n_out).zero_()
    for j0 in range(0, n_in, chunk):
        j1 = min(j0 + chunk, n_in)
        acc[:, : j1 - j0].addcmul_(e_t[:, j0:j1], weight_t[j0:j1])
    return acc.sum(1)


def _add_sample_weighted(acc: Tensor, e_t: Tensor, coef: Tensor, buf: Tensor, chunk: int = CHUNK) -> None:
    """``acc[j, i] += sum_b coef[b, i] e_t[b, j, i]``, ``chunk`` inputs at a time: ``e`` is read
    once and ``acc`` written once per block (an einsum would copy ``e``; a loop over samples
    would rewrite ``acc`` once per sample)."""
    B, n_in, n_out = e_t.shape
    scale = coef.unsqueeze(1)  # [B, 1, N_out]
    for j0 in range(0, n_in, chunk):
        j1 = min(j0 + chunk, n_in)
        part = torch.mul(e_t[:, j0:j1], scale, out=buf[: B * (j1 - j0) * n_out].view(B, j1 - j0, n_out))
        acc[j0:j1] += part.sum(0)
