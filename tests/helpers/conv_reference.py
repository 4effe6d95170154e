"""Pairwise references of the conv/pool tests: the HM2-BP rule looped over (output position, input
pixel) pairs, and random conv cases to compare against."""
from __future__ import annotations

import random

import torch

from hm2bp.functional import regulariser_grad, spsp
from hm2bp.functional.conv import conv_output_shape
from tests.helpers.spike_trains import random_trains


def random_conv_case(seed, T=70, B=2, c_in=2, hw=(6, 5), c_out=2, k=3, stride=1, padding=0):
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    pre = random_trains(rng, T, (B, c_in, *hw), silent_every=5)
    _, ho, wo = conv_output_shape((c_in, *hw), c_out, k, stride, padding)
    post = random_trains(rng, T, (B, c_out, ho, wo), silent_every=3)
    w = torch.randn(c_out, c_in, k, k, generator=g, dtype=torch.float64)
    grad = torch.randn(B, c_out, ho, wo, generator=g, dtype=torch.float64) * 4
    return pre, post, w, grad


def conv_reference(pre, post, w, grad, neuron, rule, convention, stride, padding, bias=None):
    """HM2-BP conv rule (docs/algorithm.md, "Weight update" applied per "Convolution and pooling") looped over (output position, tap) pairs."""
    T, B, c_in, H, W = pre.shape
    c_out, ho, wo = post.shape[2:]
    k = w.shape[-1]
    nu = neuron.threshold
    e = spsp(pre.reshape(T, B, -1), post.reshape(T, B, -1), convention=convention)  # [B, N_out, N_in]
    e_bias = spsp(torch.ones(T, B, 1, dtype=torch.float64), post.reshape(T, B, -1), convention=convention)
    o_in = pre.sum(0).reshape(B, -1)
    o_out = post.sum(0).reshape(B, -1)
    gw = torch.zeros_like(w)
    gb = torch.zeros(c_out, dtype=torch.float64)
    gin = torch.zeros(B, c_in * H * W, dtype=torch.float64)

    def taps(y, x):
        for ci in range(c_in):
            for ky in range(k):
                for kx in range(k):
                    iy, ix = y * stride + ky - padding, x * stride + kx - padding
                    if 0 <= iy < H and 0 <= ix < W:
                        yield ci, ky, kx, (ci * H + iy) * W + ix

    for b in range(B):
        for co in range(c_out):
            for y in range(ho):
                for x in range(wo):
                    o = (co * ho + y) * wo + x
                    delta = grad[b, co, y, x] / nu
                    active = o_out[b, o] > 0
                    if not rule.side_effect:
                        sigma = 0.0
                    elif active:
                        s = sum(w[co, ci, ky, kx] * e[b, o, i] for ci, ky, kx, i in taps(y, x))
                        if bias is not None:
                            s = s + bias[co] * e_bias[b, o, 0]
                        sigma = s / o_out[b, o] / nu
                    else:
                        s = sum(w[co, ci, ky, kx] for ci, ky, kx, _ in taps(y, x))
                        if bias is not None:
                            s = s + bias[co]
                        sigma = 0.5 * s / nu
                    for ci, ky, kx, i in taps(y, x):
                        e_oi = e[b, o, i] if active else (0.1 if o_in[b, i] > 0 else 0.0)
                        gw[co, ci, ky, kx] += delta * e_oi * (1 + sigma)
                        both = active and o_in[b, i] > 0
                        rho = e[b, o, i] / o_in[b, i] if both else 1.0
                        gin[b, i] += delta * w[co, ci, ky, kx] * (rho if rule.effect_ratio else 1.0)
                    if bias is not None:
                        gb[co] += delta * (e_bias[b, o, 0] if active else 0.1) * (1 + sigma)
    return gw + B * regulariser_grad(w, rule), gin.view(B, c_in, H, W), gb


def pool_reference(pre, post, grad, p, divisor, convention, effect_ratio):
    T, B, C, H, W = pre.shape
    ho, wo = post.shape[-2:]
    e = spsp(pre.reshape(T, B, -1), post.reshape(T, B, -1), convention=convention)
    o_in = pre.sum(0).reshape(B, -1)
    o_out = post.sum(0).reshape(B, -1)
    gin = torch.zeros(B, C, H, W, dtype=torch.float64)
    for b in range(B):
        for c in range(C):
            for y in range(ho):
                for x in range(wo):
                    o = (c * ho + y) * wo + x
                    for dy in range(p):
                        for dx in range(p):
                            iy, ix = y * p + dy, x * p + dx
                            i = (c * H + iy) * W + ix
                            both = o_out[b, o] > 0 and o_in[b, i] > 0
                            rho = e[b, o, i] / o_in[b, i] if (both and effect_ratio) else 1.0
                            gin[b, c, iy, ix] += grad[b, c, y, x] / divisor * rho
    return gin
