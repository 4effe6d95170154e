"""Compile every fused-scan kernel for a CUDA target without a GPU (Triton ships ``ptxas``):
``python -m tests.helpers.triton_compile`` prints one line per kernel variant, ``<name> ok``.

Run without ``TRITON_INTERPRET`` (the interpreter never compiles): catches what only the compiler
checks (types of loop-carried values, layouts), which the interpreter tests cannot.
"""
from __future__ import annotations

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from hm2bp.functional import triton_lif, triton_traces

TARGET = GPUTarget("cuda", 90, 32)  # H100 / H200


def _variants():
    lif = dict(cur_ptr="*fp32", spk_ptr="*u8", ep_ptr="*fp32", u_ptr="*fp32", cd_ptr="*i32", prev_ptr="*fp32",
               cnt_ptr="*fp32", lat_ptr="*fp32", L="i32", n="i32", N="i32", leak_s="fp32", leak_m="fp32",
               theta="fp32", R="constexpr", LATERAL="constexpr", BLOCK_N="constexpr")
    for r in (0, 2):
        for lateral in (False, True):
            yield f"lif R={r} lateral={lateral}", triton_lif._lif_kernel, lif, dict(R=r, LATERAL=lateral,
                                                                                   BLOCK_N=16 if lateral else 256)
    adjoint = dict(ws_ptr="*fp32", xb_off="i32", last="i64", rows="i32", n="i32", shift="i32", min_pre="i32",
                   decay_a="fp32", decay_b="fp32", scale="fp32", BLOCK_N="constexpr")
    yield "adjoint", triton_traces._adjoint_kernel, adjoint, dict(BLOCK_N=256)
    for src in ("*u8", "*fp32"):
        psp = dict(src_ptr=src, a_ptr="*fp32", b_ptr="*fp32", T="i32", n="i32", shift="i32", first="i32",
                   decay_a="fp32", decay_b="fp32", BLOCK_N="constexpr")
        yield f"psp {src}", triton_traces._psp_kernel, psp, dict(BLOCK_N=256)


def main() -> None:
    for name, fn, signature, constants in _variants():
        constexprs = {(fn.arg_names.index(k),): v for k, v in constants.items()}
        compiled = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs), target=TARGET)
        assert "fma.rn.f32" in compiled.asm["ptx"], name  # the explicit fused multiply-adds
        print(name, "ok")


if __name__ == "__main__":
    main()
