"""NIR (Neuromorphic Intermediate Representation) export and import; see docs/interop.md.

* :func:`export_nir` ``(network) -> nir.NIRGraph`` and :func:`import_nir` ``(graph) -> SpikingNetwork``;
* :mod:`hm2bp.nir.cuba`: the neuron mapping (equations);
* :mod:`hm2bp.nir.snntorch`, :mod:`hm2bp.nir.norse`, :mod:`hm2bp.nir.spikingjelly`: run an exported graph in
  snnTorch, Norse or SpikingJelly on hm2bp's clock (optional dependencies; :mod:`hm2bp.nir.stepping`);
* ``hm2bp export --config ... --ckpt_path ... --out model.nir`` (:mod:`hm2bp.nir.command`).
"""
from hm2bp.nir.cuba import DT
from hm2bp.nir.export import METADATA_KEYS, export_nir
from hm2bp.nir.load import import_nir

__all__ = ["DT", "METADATA_KEYS", "export_nir", "import_nir"]
