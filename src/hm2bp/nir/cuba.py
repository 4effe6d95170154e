r"""The hm2bp LIF neuron as a NIR ``CubaLIF`` node, and back.

hm2bp steps (docs/algorithm.md, "Neuron model"; in the scaled membrane :math:`u = \tau_s v` of
:class:`hm2bp.functional.lif.LIFScan`; :math:`\tau_s, \tau_m` in steps):

.. math::  \epsilon_t = (1 - 1/\tau_s)\,\epsilon_{t-1} + x_t,\qquad
           u_t = (1 - 1/\tau_m)\,u_{t-1} + \epsilon_t,\qquad s_t = [u_t > \tau_s(\nu - \varepsilon_\nu)]

with :math:`x_t = W s^{in}_{t-1}` and :math:`u \leftarrow 0` on a spike. NIR's ``CubaLIF``,
:math:`\tau_{syn}\dot I = -I + w_{in} x`, :math:`\tau_{mem}\dot v = (v_{leak} - v) + r I`, stepped by
forward Euler with step :math:`\Delta t`, is

.. math::  I_t = (1 - \Delta t/\tau_{syn}) I_{t-1} + (\Delta t\, w_{in}/\tau_{syn})\, x_t,\qquad
           v_t = (1 - \Delta t/\tau_{mem}) v_{t-1} + (\Delta t\, r/\tau_{mem}) I_t .

So :math:`\tau_{syn} = \tau_s \Delta t`, :math:`\tau_{mem} = \tau_m \Delta t`, :math:`w_{in} = \tau_s`,
:math:`r = \tau_m`, :math:`v_{leak} = v_{reset} = 0` and :math:`v_{threshold} = \tau_s(\nu - \varepsilon_\nu)`
make :math:`I \equiv \epsilon` and :math:`v \equiv u` step for step. In general a node maps back with
:math:`\nu - \varepsilon_\nu = v_{threshold}\,\tau_m / (r\, w_{in})` (the same identities solved for
:math:`\nu`). NIR has no refractory period; it travels in the node's metadata.
"""
from __future__ import annotations

import nir
import numpy as np

from hm2bp.functional import LIFParams

DT = 1e-4  # seconds per hm2bp step in the graph: the step snnTorch 1.0.0's importer assumes


def to_cuba(c: LIFParams, shape: tuple[int, ...], dt: float = DT, **metadata) -> nir.CubaLIF:
    """``CubaLIF`` of ``shape`` neurons with the constants ``c`` whose forward-Euler steps equal
    hm2bp's (module docstring)."""
    full = lambda v: np.full(shape, v, dtype=np.float64)  # noqa: E731
    meta = {"threshold": c.threshold, "threshold_eps": c.threshold_eps, "refractory_steps": c.refractory, **metadata}
    return nir.CubaLIF(
        tau_syn=full(c.tau_s * dt),
        tau_mem=full(c.tau_m * dt),
        r=full(c.tau_m),
        v_leak=full(0.0),
        v_threshold=full(c.tau_s * (c.threshold - c.threshold_eps)),
        v_reset=full(0.0),
        w_in=full(c.tau_s),
        metadata=meta,
    )


def _uniform(node: nir.CubaLIF, field: str, where: str) -> float:
    values = np.unique(np.asarray(getattr(node, field), dtype=np.float64))
    if values.size != 1:
        raise ValueError(f"{where}: CubaLIF.{field} differs between neurons ({values[:3].tolist()} ...); hm2bp layers "
                         f"share one value per layer")
    return float(values[0])


def from_cuba(node: nir.CubaLIF, dt: float, where: str, psp: str = "exact") -> LIFParams:
    """hm2bp neuron record of a ``CubaLIF`` node (``where`` names it in errors) with the S-PSP
    convention ``psp`` (NIR has none: the graph's metadata carries it).

    ``threshold`` and ``threshold_eps`` come from the node's metadata when hm2bp wrote it (exact
    round trip); otherwise :math:`\\nu = v_{threshold}\\,\\tau_m/(r\\,w_{in})` and no offset.
    NIR has no refractory period: ``refractory_steps`` in the metadata, else 0.
    """
    for field in ("v_leak", "v_reset"):
        if _uniform(node, field, where) != 0.0:
            raise ValueError(f"{where}: CubaLIF.{field} must be 0 (hm2bp neurons rest and reset at 0)")
    tau_s = _uniform(node, "tau_syn", where) / dt
    tau_m = _uniform(node, "tau_mem", where) / dt
    r, w_in, v_th = (_uniform(node, f, where) for f in ("r", "w_in", "v_threshold"))
    if min(tau_s, tau_m, r, w_in, v_th) <= 0:
        raise ValueError(f"{where}: CubaLIF needs positive tau_syn, tau_mem, r, w_in and v_threshold")
    meta = node.metadata or {}
    refractory = int(meta.get("refractory_steps", 0))
    if "threshold" in meta:
        threshold, eps = float(meta["threshold"]), float(meta.get("threshold_eps", 0.0))
    else:
        threshold, eps = v_th * tau_m / (r * w_in), 0.0
    return LIFParams(threshold, tau_m=round(tau_m, 9), tau_s=round(tau_s, 9), refractory=refractory,
                     threshold_eps=eps, psp=psp, where=where)
