"""An independent float64 port of the authors' per-sample MLP training step, for trajectory tests.

Written from the official program's kernels, not from hm2bp's code: the LIF loop of
``g_Spiking_feedforward``, the pairwise S-PSP of ``d_Spiking_accumulate_effect`` (spike-time loops,
the +T_ref shift, the 4*tau_m window, the 0.1 constant for a silent post neuron), the output error
and target injection of ``Spiking::backpropagation``, the lateral factor of
``g_getLateralFactor_output``, the effect ratio of ``g_Spiking_synaptic_effect``, the side effect of
``g_Spiking_wgrad_sideEffect``, the regulariser of ``g_Spiking_gradAdd`` and Adam of
``g_adam_vecAdd``. Layers are updated from the output backwards within one sample; the hidden error
is computed from the output weights before their update, as in ``getSpikingNetworkCost``.

Only numpy is used. The S-PSP of a post neuron is summed over its spikes into a kernel over
pre-spike times, then contracted with the 0/1 input trains (the same sums as the pair loops, in
another order).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class OfficialLayer:
    w: np.ndarray  # [out, in]
    vth: float
    lateral: float = 0.0  # local inhibition strength (output layer)
    m: np.ndarray = field(init=False)
    v: np.ndarray = field(init=False)
    b1t: float = 0.9
    b2t: float = 0.999

    def __post_init__(self):
        self.m = np.zeros_like(self.w)
        self.v = np.zeros_like(self.w)


@dataclass(frozen=True)
class OfficialConfig:
    T: int = 400
    tau_m: float = 64.0
    tau_s: float = 8.0
    t_ref: int = 2
    desired: float = 35.0
    undesired: float = 5.0
    margin: float = 5.0
    lam: float = 10.0
    beta: float = 0.04
    limit: float = 8.0
    lr: float = 1e-3


def lif(current: np.ndarray, layer: OfficialLayer, cfg: OfficialConfig) -> np.ndarray:
    """``g_Spiking_feedforward``: current ``[T, out]`` (input spikes of t-1 already weighted) -> spikes."""
    T, n = current.shape
    out = np.zeros((T, n), dtype=bool)
    v = np.zeros(n)
    ep = np.zeros(n)
    t_ref = np.zeros(n, dtype=np.int64)
    thr = layer.vth - 1e-6
    lat = None
    if layer.lateral:
        lat = -layer.lateral * (np.ones((n, n)) - np.eye(n))
    for t in range(T):
        v -= v / cfg.tau_m
        ep -= ep / cfg.tau_s
        if t == 0:
            continue
        resp = current[t - 1].copy()
        if lat is not None:
            resp += lat @ out[t - 1]
        ep += resp * cfg.tau_m / cfg.tau_m
        v += ep / cfg.tau_s
        refr = t_ref > 0
        v[refr] = 0.0
        t_ref[refr] -= 1
        fire = v > thr
        out[t] = fire
        t_ref[fire] = cfg.t_ref
        v[fire] = 0.0
    return out


def forward(layers: list[OfficialLayer], spikes_in: np.ndarray, cfg: OfficialConfig) -> list[np.ndarray]:
    """Spike trains ``[T, n]`` of every layer, input first."""
    trains = [spikes_in.astype(bool)]
    for layer in layers:
        cur = trains[-1].astype(np.float64) @ layer.w.T  # [T, out]; step t feeds step t+1
        trains.append(lif(cur, layer, cfg))
    return trains


def psp_kernel(post: np.ndarray, cfg: OfficialConfig) -> np.ndarray:
    """``K[o, t_pre]`` = sum over post spikes of the official pair term, so that ``e = K @ pre``."""
    T, n = post.shape
    K = np.zeros((n, T))
    window = int(4 * cfg.tau_m)
    for o in range(n):
        last = 1
        for t_post in np.flatnonzero(post[:, o]):
            lb = max(1, t_post - window)
            t_pre = np.arange(lb, t_post)
            pre_time = t_pre + cfg.t_ref
            ok = pre_time <= t_post
            t_pre, pre_time = t_pre[ok], pre_time[ok]
            s = t_post - last
            t = t_post - pre_time
            factor = np.exp(-np.maximum(t - s, 0) / cfg.tau_s) / (1 - cfg.tau_s / cfg.tau_m)
            mn = np.minimum(s, t)
            K[o, t_pre] += factor * (np.exp(-mn / cfg.tau_m) - np.exp(-mn / cfg.tau_s))
            last = t_post + cfg.t_ref
    return K


def effect(pre: np.ndarray, post: np.ndarray, cfg: OfficialConfig) -> np.ndarray:
    """Accumulated synaptic effect ``e[o, i]`` with the 0.1 rule for a silent post neuron."""
    e = psp_kernel(post, cfg) @ pre.astype(np.float64)  # [out, in]
    silent_post = post.sum(0) == 0
    active_pre = pre.sum(0) > 0
    e[np.ix_(silent_post, active_pre)] = 0.1
    return e


def inject(post: np.ndarray, label: int, cfg: OfficialConfig) -> np.ndarray:
    """``g_modifySpikes``: a silent target gets spikes every ``T // desired`` steps."""
    post = post.copy()
    if post[:, label].sum() == 0:
        interval = cfg.T // int(cfg.desired)
        post[interval : cfg.T : interval, label] = True
    return post


def lateral_factor(out: np.ndarray, label: int, w0: float, vth: float, cfg: OfficialConfig) -> np.ndarray:
    """``g_getLateralFactor_output`` on the trains before injection."""
    n = out.shape[1]
    cnt = out.sum(0)
    d = np.where((cnt > 0) | (np.arange(n) == label), 1.0 / vth, 0.0)
    K = psp_kernel(out, cfg)  # post l over pre times
    e = K @ out.astype(np.float64)  # e[l, j]: j -> l (the 0.1 rule never matters: a silent l gives ratio 1)
    gamma = np.empty(n)
    for j in range(n):
        acc = 0.0
        for l in range(n):
            if l == j:
                continue
            r_jl = 1.0 if cnt[j] == 0 or cnt[l] == 0 else e[l, j] / cnt[j]
            r_lj = 1.0 if cnt[l] == 0 or cnt[j] == 0 else e[j, l] / cnt[l]
            acc += r_jl * d[l] * r_lj * d[j]
        gamma[j] = 1.0 / (1.0 - acc * w0 * w0)
    return gamma


def regulariser(w: np.ndarray, cfg: OfficialConfig) -> np.ndarray:
    sq = ((w / cfg.limit) ** 2).mean(1, keepdims=True)
    return cfg.lam * cfg.beta * (w / cfg.limit) * np.exp(cfg.beta * (sq - 1))


def adam(layer: OfficialLayer, g: np.ndarray, lr: float) -> None:
    layer.m = 0.9 * layer.m + 0.1 * g
    layer.v = 0.999 * layer.v + 0.001 * g * g
    layer.w -= lr * (layer.m / (1 - layer.b1t)) / (np.sqrt(layer.v / (1 - layer.b2t)) + 1e-8)
    layer.b1t *= 0.9
    layer.b2t *= 0.999


def train_sample(layers: list[OfficialLayer], spikes_in: np.ndarray, label: int, cfg: OfficialConfig) -> np.ndarray:
    """One official per-sample update of a fully connected network; returns the output counts."""
    trains = forward(layers, spikes_in, cfg)
    delta = None
    for k in range(len(layers) - 1, -1, -1):
        layer, pre, post = layers[k], trains[k], trains[k + 1]
        counts = post.sum(0).astype(np.float64)
        gamma = np.ones(post.shape[1])
        if k == len(layers) - 1:
            target = np.full(post.shape[1], cfg.undesired)
            target[label] = cfg.desired
            diff = counts - target
            delta = np.where(np.abs(diff) > cfg.margin, diff, 0.0)
            if layer.lateral:
                gamma = lateral_factor(post, label, layer.lateral, layer.vth, cfg)
            post = inject(post, label, cfg)
            counts = post.sum(0).astype(np.float64)
        e = effect(pre, post, cfg)
        pre_cnt = pre.sum(0).astype(np.float64)
        ratio = np.where((pre_cnt[None, :] == 0) | (counts[:, None] == 0), 1.0,
                         e / np.maximum(pre_cnt[None, :], 1))
        delta = delta / layer.vth
        next_delta = delta @ (ratio * layer.w) if k > 0 else None
        side = (layer.w * np.where(counts[:, None] == 0, 0.5, e / np.maximum(counts[:, None], 1))).sum(1) / layer.vth
        grad = delta[:, None] * e * (1 + side)[:, None] * gamma[:, None] + regulariser(layer.w, cfg)
        adam(layer, grad, cfg.lr)
        delta = next_delta
    return trains[-1].sum(0)
