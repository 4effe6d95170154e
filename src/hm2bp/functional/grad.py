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
The S-PSP matrices come from the post-side adjoint trace :math:`Q` and the 0/1 input spikes,
:math:`E_b = Q_b^\top S_b` (``spsp.adjoint_trace``), gathered event by event over the input
spikes (``spsp.spsp_from_trace``: ``nnz(S) N_out`` additions). They are formed for a block of
samples at a time (``group``), so memory stays ``O(group N_in N_out + T group N_out)`` whatever the
batch, and every factor of the rule is then a reduction of the block.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hm2bp.functional.current import MAX_SPARSE_DENSITY, as_uint8
from hm2bp.functional.params import HM2BPRule
from hm2bp.functional.psp import PSPKernel
from hm2bp.functional.spsp import InputEvents, adjoint_trace, materialise, reset_events, spsp_from_trace

# Without an input error, the trace path costs ~2 nnz(S) N_out gathered additions, the S-PSP-matrix
# path ~nnz(S) N_out plus passes over B N_in N_out that do not shrink with T; the trace path is
# measured faster below about this many spikes per input train (784-800-10 at p = 0.03: 2.5x
# faster at T = 50, 4 % slower at T = 400; docs/benchmarks.md, "Choosing the backward path").
TRACE_MAX_SPIKES_PER_INPUT = 8.0
CHUNK = 64  # inputs per chunk of the element-wise reductions over an S-PSP block (kept in cache)


# ----------------------------------------------------------------------------- reduced products
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


# ----------------------------------------------------------------------------- official pieces
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


def lateral_factor(post: Tensor, counts: Tensor, target: Tensor | None, rule: HM2BPRule) -> Tensor:
    """Lateral factor ``gamma`` ``[B, N]`` of an inhibited output layer (``docs/algorithm.md``, "Lateral inhibition").

    ``e`` between output trains is materialised (``[B, N, N]``, small: N = classes).
    ``d_k = 1/nu`` if ``o_k > 0`` or ``k`` is the target, else 0; ratios are 1 if a count is 0.
    """
    e = materialise([(adjoint_trace(post, rule.psp_kernel, counts.dtype), post.to(counts.dtype))])  # e[b, l, i]: post l, pre i
    o = counts
    both = (o[:, :, None] > 0) & (o[:, None, :] > 0)  # [B, l, i]
    ratio = torch.where(both, e / o[:, None, :].clamp(min=1), torch.ones_like(e))  # e_{l|i} / o_i
    pair = ratio * ratio.transpose(1, 2)  # (e_{l|i}/o_i)(e_{i|l}/o_l), symmetric
    active = o > 0
    if target is not None:
        active = active.clone()
        active[torch.arange(o.shape[0], device=o.device), target] = True
    d = active.to(o.dtype) / rule.threshold  # [B, N]
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


# ----------------------------------------------------------------------------- the layer backward
def hm2bp_backward(
    pre: Tensor,
    post: Tensor,
    weight: Tensor,
    grad_counts: Tensor,
    rule: HM2BPRule,
    *,
    target: Tensor | None = None,
    need_input_grad: bool = True,
    bias: Tensor | None = None,
    o_in: Tensor | None = None,
    o_out: Tensor | None = None,
    pre_events: InputEvents | None = None,
    post_index: Tensor | None = None,
    path: str = "auto",
    group: int | None = None,
    memory_budget: int = 64 * 2**20,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """HM2-BP gradients of one fully connected spiking layer (``docs/algorithm.md``, "Weight update").

    Args:
        pre: ``[T, B, N_in]`` input spikes (0/1, any dtype).
        post: ``[T, B, N_out]`` output spikes of the forward pass.
        weight: ``[N_out, N_in]`` feed-forward weights (pre-update).
        grad_counts: ``[B, N_out]`` ``dE/do`` of this layer's output counts.
        rule: the learning-rule options.
        target: ``[B]`` labels, used by target injection and the lateral factor.
        need_input_grad: also return ``dE/do`` of the input counts.
        bias: optional ``[N_out]`` bias, modelled as a synapse from an input that fires at
            every step (its weight gradient uses the same S-PSP rule).
        o_in, o_out: the input and output spike counts ``[B, N]`` when the caller has them
            (the forward pass does); computed from the trains otherwise.
        pre_events: ``pre`` as :class:`~hm2bp.functional.spsp.InputEvents` when the caller has
            them (the event-driven forward does); found from ``pre`` otherwise.
        post_index: ascending flat indices of ``post``'s spikes when the caller has them.
        path: ``"spsp"`` forms the per-sample S-PSP matrices of a block and reduces them;
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
    dtype = weight.dtype
    T, B = post.shape[:2]
    n_in = weight.shape[1]
    counts_raw = o_out.to(dtype) if o_out is not None else spike_counts(post, dtype)  # [B, N_out]
    o_in = o_in.to(dtype) if o_in is not None else spike_counts(pre, dtype)  # [B, N_in]
    gamma = None
    if rule.lateral_factor and rule.lateral_inhibition != 0.0:
        gamma = lateral_factor(post.to(dtype), counts_raw, target, rule)
    if rule.target_injection is not None and target is not None:
        injected = inject_target(post, counts_raw, target, rule.target_injection, rule.psp_kernel.refractory)
    else:
        injected = post
    # inject_target returns its input when no target was silent: the counts are unchanged then
    o_out = counts_raw if injected is post else spike_counts(injected, dtype)
    if injected is not post:
        post_index = None  # the injected trains have other spikes
    post = injected
    delta = grad_counts.to(dtype) / rule.threshold  # [B, N_out]
    silent_out = (o_out == 0).to(dtype)  # 1 where a post neuron fired no spike
    weight_t = weight.t().contiguous()  # [N_in, N_out]; gathered by row and read in row chunks
    if rule.side_effect:
        silent_sigma = rule.silent_side_ratio * weight.sum(1) / rule.threshold  # [N_out]
        if bias is not None:
            silent_sigma = silent_sigma + rule.silent_side_ratio * bias / rule.threshold
    grad_wt = torch.zeros_like(weight_t)  # [N_in, N_out]
    grad_b = torch.zeros_like(bias) if bias is not None else None
    grad_in = torch.empty(B, n_in, dtype=dtype, device=weight.device) if need_input_grad else None
    if pre_events is None:  # count first: a dense input needs no event list
        density = int(torch.count_nonzero(as_uint8(pre))) / max(1, pre.numel())
        pre_events = InputEvents.from_spikes(pre) if density <= MAX_SPARSE_DENSITY else None
    else:
        density = pre_events.density()
    sparse_pre = pre_events is not None
    n_out = post[0, 0].numel()
    # Without an error to the inputs, the rule needs only a_ff and the coefficient-weighted sum of
    # e over samples: both contract Q with the input events directly ("trace" path), with no
    # per-sample [N_in, N_out] S-PSP matrix (whose cost does not shrink with T).
    if path not in ("auto", "spsp", "trace"):
        raise ValueError(f"path must be 'auto', 'spsp' or 'trace', got {path!r}")
    can_trace = not need_input_grad and sparse_pre
    if path == "trace" and not can_trace:
        raise ValueError("path='trace' needs need_input_grad=False and sparse input spikes")
    by_trace = path == "trace" or (
        path == "auto" and can_trace and density * T < TRACE_MAX_SPIKES_PER_INPUT
    )
    item = weight.element_size()
    if group is None:
        per_sample = 3 * T * n_out  # the two scans' workspace (+ the trace path's current chunks)
        if not by_trace:  # e_b, and w_ij e_{i|j} when the error to the inputs needs it
            per_sample += (2 if need_input_grad and rule.effect_ratio else 1) * weight.numel()
        group = max(1, min(B, memory_budget // (per_sample * item)))
    events = reset_events(post, rule.psp_kernel, dtype, index=post_index)  # once for the batch, sliced per block
    # buffers reused by every block (fresh multi-MB tensors per block cost page faults)
    workspace = torch.empty(2 * (T + rule.psp_kernel.shift) * group * n_out, dtype=dtype, device=weight.device)
    n_ff = n_in * n_out
    w_buf = None  # w_ij e_{i|j} of a block, when the error to the inputs needs it whole
    if not by_trace and need_input_grad and rule.effect_ratio:
        w_buf = torch.empty(group * n_ff, dtype=dtype, device=weight.device)
    chunk_buf = None if by_trace else torch.empty(group * min(n_in, CHUNK) * n_out, dtype=dtype, device=weight.device)
    for b0 in range(0, B, group):
        rows = slice(b0, min(b0 + group, B))
        g = rows.stop - rows.start
        block_events = events.neurons(b0 * n_out, rows.stop * n_out)
        q = adjoint_trace(post[:, rows], rule.psp_kernel, dtype, events=block_events, workspace=workspace)  # [T, g, N_out]
        block_pre = pre_events.samples(rows.start, rows.stop) if sparse_pre else pre[:, rows]
        e_bias = q.sum(0) if bias is not None else None  # the always-on input (fires at every step)
        coef = delta[rows]
        if gamma is not None:
            coef = coef * gamma[rows]
        if by_trace:
            if rule.side_effect:
                a_ff = _trace_dot_current(q, block_pre, weight_t)  # sum_s Q[s] (W s[s]): T-PSP of the synapses
                if bias is not None:
                    a_ff = a_ff + bias * e_bias
                coef = coef * (1.0 + _sigma(a_ff, o_out[rows], silent_sigma, rule))
            grad_wt += _events_weighted_trace(q.mul_(coef), block_pre)  # sum_b coef[b, i] e_{b, i|j}
        else:
            e_t = spsp_from_trace(q, block_pre)  # [g, N_in, N_out]: e_t[b, j, i] = e_{b, i|j}
            weighted = None  # w_ij e_{i|j}, shared by the side effect and the error to the inputs
            if need_input_grad and rule.effect_ratio:
                weighted = torch.mul(e_t, weight_t, out=w_buf[: g * n_ff].view(e_t.shape))  # [g, N_in, N_out]
            if rule.side_effect:
                # [g, N_out]: T-PSP of the feed-forward synapses
                a_ff = weighted.sum(1) if weighted is not None else _weighted_rows(e_t, weight_t, chunk_buf)
                if bias is not None:
                    a_ff = a_ff + bias * e_bias
                coef = coef * (1.0 + _sigma(a_ff, o_out[rows], silent_sigma, rule))
            _add_sample_weighted(grad_wt, e_t, coef, chunk_buf)  # sum_b coef[b, i] e_t[b, j, i]
            del e_t
        del q
        silent_coef = coef * silent_out[rows]  # silent posts: e = silent_spsp per active pre
        grad_wt += rule.silent_spsp * (o_in[rows] > 0).to(dtype).t() @ silent_coef
        if grad_b is not None:
            grad_b += (e_bias * coef).sum(0) + rule.silent_spsp * silent_coef.sum(0)
        if need_input_grad:
            d = delta[rows]
            if rule.effect_ratio:
                h = torch.bmm(weighted, d.unsqueeze(-1)).squeeze(-1)  # sum_i delta_i w_ij e_{i|j}
                o_j = o_in[rows]
                from_silent = (d * silent_out[rows]) @ weight  # rho = 1 where o_i = 0
                grad_in[rows] = torch.where(o_j > 0, h / o_j.clamp(min=1) + from_silent, d @ weight)
                del weighted
            else:
                grad_in[rows] = d @ weight
    grad_w = grad_wt.t() + B * regulariser_grad(weight, rule)
    return grad_w, grad_in, grad_b


def _sigma(a_ff: Tensor, o: Tensor, silent_sigma: Tensor, rule: HM2BPRule) -> Tensor:
    """Side effect ``sigma = a_ff / (nu o)``, the silent constant where ``o = 0`` ("Weight update")."""
    return torch.where(o > 0, a_ff / (rule.threshold * o.clamp(min=1)), silent_sigma)


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
