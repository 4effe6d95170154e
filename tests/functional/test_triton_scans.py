"""The fused Triton scans (``triton_lif``, ``triton_traces``) against the eager path, on the CPU
through Triton's interpreter (``TRITON_INTERPRET=1``, set before anything imports triton).

Spikes and counts must be bit-exact. Traces and gradients must agree within ``TRACE_TOL`` of the
largest magnitude: each reverse-scan step rounds once (half an ulp), and the geometric decay
``a = 1 - 1/tau_m`` sums those roundings to at most about ``2^-24 / (1 - a) = 64 * 6e-8 ~ 4e-6``
of the trace, so ``1e-5`` leaves room for a compiler that fuses differently on a GPU. (The
interpreter computes ``tl.fma`` with one rounding, as PyTorch's CPU kernels do: there the traces
come out identical.)
"""
from __future__ import annotations

import os
import sys

_IMPORTED_EARLY = "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1"
os.environ["TRITON_INTERPRET"] = "1"  # before any import of triton (it reads the setting at import)

import dataclasses  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from hm2bp.functional import HM2BPRule, LIFParams, LinearForward, hm2bp_backward, lif_simulate, psp_traces  # noqa: E402
from hm2bp.functional.forward import conv_forward, linear_forward, pool_forward  # noqa: E402
from hm2bp.functional.lif import LIFScan  # noqa: E402
from hm2bp.functional.scan_backend import triton_importable  # noqa: E402
from hm2bp.functional.spsp import adjoint_trace  # noqa: E402

pytestmark = [
    pytest.mark.skipif(_IMPORTED_EARLY, reason="triton was imported before TRITON_INTERPRET=1 could be set; run "
                       "this file in its own process"),
    pytest.mark.skipif(not _IMPORTED_EARLY and not triton_importable(),
                       reason="triton is not installed (optional; the dev extra has it)"),
]

TRACE_TOL = 1e-5  # of the largest |value|: see the module docstring


def _fused(neuron: LIFParams) -> LIFParams:
    return dataclasses.replace(neuron, scan_backend="triton")


def _current(kind: str, T: int = 32, B: int = 3, N: int = 10, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    cur = torch.rand(T, B, N, generator=g) * 4
    if kind == "silent":  # one sample never reaches threshold, and one neuron of every sample
        cur[:, 0] *= 0.01
        cur[:, :, 3] = -1.0
    elif kind == "saturated":  # fires at the refractory limit
        cur[:, :, :5] = 1e4
    return cur


@pytest.mark.parametrize("refractory", [0, 2])
@pytest.mark.parametrize("w0", [None, 1.0, 0.3])
@pytest.mark.parametrize("kind", ["mixed", "silent", "saturated"])
def test_lif_scan_spikes_are_bit_exact(refractory, w0, kind):
    cur = _current(kind)
    N = cur.shape[-1]
    lateral = None if w0 is None else -w0 * (1 - torch.eye(N))
    neuron = LIFParams(2.0, refractory=refractory)
    eager = lif_simulate(cur, neuron, lateral=lateral)
    for block in (64, 7):  # one launch; state carried across launches
        spikes = torch.zeros(cur.shape, dtype=torch.bool)
        scan = LIFScan(spikes, _fused(neuron), lateral=lateral)
        assert scan.fused
        for t0 in range(0, cur.shape[0], block):
            scan.run(t0, cur[t0 : t0 + block])
        assert torch.equal(spikes, eager), (refractory, w0, kind, block)
        assert torch.equal(scan.counts, eager.sum(0).float())
    if kind == "silent":
        assert not eager[:, 0].any() and not eager[:, :, 3].any()
    if kind == "saturated":
        assert torch.equal(eager[:, :, :5].sum(0), torch.full((3, 5), (cur.shape[0] - 2) // (refractory + 1) + 1))


def test_scan_writes_through_a_permuted_train():
    """Conv layers scan channels-last state into a permuted view of the train."""
    T, B, C, H, W = 30, 2, 3, 4, 4
    cur = torch.rand(T, B, H, W, C, generator=torch.Generator().manual_seed(1)) * 4
    neuron = LIFParams(2.0)
    trains = []
    for nr in (neuron, _fused(neuron)):
        out = torch.zeros(T, B, C, H, W, dtype=torch.bool)
        scan = LIFScan(out.permute(0, 1, 3, 4, 2), nr)
        scan.run(0, cur)
        trains.append(out)
    assert trains[0].any() and torch.equal(*trains)


def test_layer_forwards_are_bit_exact():
    """Fully connected (with output inhibition), conv and pool forwards: one fused launch per layer."""
    from hm2bp.functional.conv_events import ConvGeometry

    g = torch.Generator().manual_seed(2)
    T, B = 25, 2
    spikes = torch.rand(T, B, 30, generator=g) < 0.2
    w = torch.randn(8, 30, generator=g) * 2
    lat = -1.0 * (1 - torch.eye(8))
    neuron = LIFParams(3.0)
    a = linear_forward(spikes, w, None, neuron, lateral=lat)
    b = linear_forward(spikes, w, None, _fused(neuron), lateral=lat)
    assert a[0].any() and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and torch.equal(a[3], b[3])

    img = torch.rand(T, B, 2, 6, 6, generator=g) < 0.2
    wc = torch.randn(3, 2, 3, 3, generator=g)
    geom = ConvGeometry(c_in=2, h=6, w=6, c_out=3, k=3)
    conv = LIFParams(1.0, threshold_eps=0.0)
    c0 = conv_forward(img, wc, None, conv, geom)
    c1 = conv_forward(img, wc, None, _fused(conv), geom)
    assert c0[0].any() and torch.equal(c0[0], c1[0]) and torch.equal(c0[1], c1[1])
    p0 = pool_forward(img, 2, LIFParams(0.5), torch.float32)
    p1 = pool_forward(img, 2, _fused(LIFParams(0.5)), torch.float32)
    assert p0[0].any() and torch.equal(p0[0], p1[0]) and torch.equal(p0[1], p1[1])


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=TRACE_TOL * max(1.0, want.abs().max().item()))


@pytest.mark.parametrize("psp", ["exact", "official", "paper"])
def test_adjoint_and_psp_traces_match_eager(psp):
    neuron = LIFParams(2.0, psp=psp)
    post = lif_simulate(_current("mixed", T=60, B=2, N=5, seed=3), neuron)
    assert post.sum() > 20
    kernel = neuron.psp_kernel
    _close(adjoint_trace(post, _fused(neuron).psp_kernel), adjoint_trace(post, kernel).clone())
    for got, want in zip(psp_traces(post, _fused(neuron).psp_kernel), psp_traces(post, kernel)):
        _close(got, want)


@pytest.mark.parametrize("psp", ["exact", "official"])
def test_backward_gradients_match_eager(psp):
    """The whole fully connected backward (adjoint trace fused) on float32 trains."""
    g = torch.Generator().manual_seed(4)
    T, B, n_in, n_out = 50, 3, 12, 6
    pre = torch.rand(T, B, n_in, generator=g) < 0.1
    w = torch.randn(n_out, n_in, generator=g) * 3
    neuron = LIFParams(2.0, psp=psp)
    post, counts, _, index = linear_forward(pre, w, None, neuron)
    assert post.sum() > 10
    grad = torch.randn(B, n_out, generator=g)
    rule = HM2BPRule()
    fwd = LinearForward(pre, post, counts_out=counts, post_index=index)
    want = hm2bp_backward(fwd, w, grad, neuron, rule)
    got = hm2bp_backward(fwd, w, grad, _fused(neuron), rule)
    for x, y in zip(got[:2], want[:2]):
        _close(x, y)


def test_cnn_step_matches_eager():
    """A small CNN (conv, pool, fully connected with output inhibition): output spikes identical,
    every gradient (conv backward: fused adjoint and PSP traces) within the trace tolerance."""
    from hm2bp import SpikeCountLoss, SpikingNetwork

    torch.manual_seed(5)
    options = dict(refractory=2, output_lateral_inhibition=1.0, psp="official", target_injection=5.0, fc_init=3.0)
    nets = [SpikingNetwork("8x8-3C3-P2-12-4", [0.6, 0.5, 0.3, 0.1], scan_backend=b, **options) for b in ("eager", "triton")]
    nets[1].load_state_dict(nets[0].state_dict())
    g = torch.Generator().manual_seed(6)
    x = (torch.rand(30, 2, 64, generator=g) < 0.3).to(torch.uint8)
    y = torch.tensor([1, 3])
    outs, grads = [], []
    for net in nets:
        out = net(x, target=y)
        SpikeCountLoss()(out.sum(0), y).backward()
        outs.append(out.detach())
        grads.append([p.grad for p in net.parameters()])
    assert outs[0].any() and torch.equal(*outs)
    for got, want in zip(grads[1], grads[0]):
        assert want.abs().max() > 0
        _close(got, want)


def test_kernels_compile_for_a_cuda_target(tmp_path):
    """Every kernel variant compiles to PTX for sm_90 (no GPU needed), in a process without the
    interpreter and with an empty kernel cache."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # silence 3.9's warning about the default
    out = subprocess.run([sys.executable, "-m", "tests.helpers.triton_compile"], capture_output=True, text=True,
                         env=env, timeout=300, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    if out.returncode != 0 and "ptxas" in out.stderr and "not found" in out.stderr.lower():
        pytest.skip("no ptxas for a CUDA compile")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count(" ok") == 7, out.stdout
