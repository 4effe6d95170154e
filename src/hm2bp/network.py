"""``SpikingNetwork``: a stack of HM2-BP spiking layers built from a compact spec string.

Spec grammar (dash separated): an input token, then layers.

* input: ``784`` (a vector) or ``28x28`` / ``2x34x34`` (an image, channels first);
* ``800``: fully connected layer of 800 neurons (``SpikingLinear``);
* ``15C5``: convolution with 15 kernels of 5x5 (``SpikingConv2d``);
* ``P2``: 2x2 spiking pooling (``SpikingPool2d``).

The last token is the output layer. ``thresholds`` gives one threshold per layer.
Layers are named ``conv1, pool1, ..., fc1, ..., output`` (the names of ``spikes/<layer>/...`` logs).
Shapes are time-first: input ``[T, B, *input_shape]`` -> output ``[T, B, classes]``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hm2bp.checks import check_labels, check_spikes
from hm2bp.errors import ConfigError, InputError
from hm2bp.layers import SpikingLinear
from hm2bp.layers.linear import as_trains, spikes_with_counts

_CONV = re.compile(r"^(\d+)[cC](\d+)$")
_POOL = re.compile(r"^[pP](\d+)$")
_SHAPE = re.compile(r"^\d+(x\d+)*$")


@dataclass(frozen=True)
class LayerSpec:
    kind: str  # "fc" | "conv" | "pool"
    size: int  # neurons (fc), kernels (conv) or pool size (pool)
    kernel: int = 0


def parse_spec(spec: str) -> tuple[tuple[int, ...], list[LayerSpec]]:
    """Parse ``"784-800-10"`` or ``"28x28-15C5-P2-40C5-P2-300-10"`` -> (input shape, layers)."""
    tokens = [t.strip() for t in str(spec).split("-") if t.strip()]
    key = "model.network.init_args.spec"
    if len(tokens) < 2:
        raise ConfigError(f"{key}: network spec {spec!r} needs an input and at least one layer, e.g. '784-800-10'")
    if not _SHAPE.match(tokens[0]):
        raise ConfigError(f"{key}: network spec {spec!r}: input token {tokens[0]!r} must look like '784' or '28x28'")
    shape = tuple(int(v) for v in tokens[0].split("x"))
    if min(shape) <= 0:
        raise ConfigError(f"{key}: network spec {spec!r}: input sizes must be positive")
    layers = []
    for tok in tokens[1:]:
        if tok.isdigit():
            layers.append(LayerSpec("fc", int(tok)))
        elif m := _CONV.match(tok):
            layers.append(LayerSpec("conv", int(m.group(1)), int(m.group(2))))
        elif m := _POOL.match(tok):
            layers.append(LayerSpec("pool", int(m.group(1))))
        else:
            raise ConfigError(f"{key}: network spec {spec!r}: cannot parse layer token {tok!r} (use 800, 15C5 or P2)")
        if layers[-1].size <= 0 or (layers[-1].kind == "conv" and layers[-1].kernel <= 0):
            raise ConfigError(f"{key}: network spec {spec!r}: layer token {tok!r} must have positive sizes")
    if layers[-1].kind != "fc":
        raise ConfigError(f"{key}: network spec {spec!r}: the output layer must be fully connected")
    return shape, layers


class SpikingNetwork(nn.Module):
    """Feed-forward spiking network trained with HM2-BP.

    Args:
        spec: architecture string (module docstring), e.g. ``"784-800-10"``.
        thresholds: one firing threshold per layer (official MNIST MLP: ``[20, 8]``).
        tau_m, tau_s, refractory: neuron constants in steps for every layer (official 64, 8, 2).
        output_lateral_inhibition: ``w0`` of the output layer's all-to-all inhibition (official 1).
        spsp: S-PSP convention of every layer (``"exact"``, ``"official"`` or ``"paper"``).
        effect_ratio, side_effect, lateral_factor: HM2-BP rule switches (spec §3.4, §3.5).
        target_injection: desired count of the injected train for a silent target (official 35);
            ``None`` turns injection off.
        reg_lambda, reg_beta, reg_limit: H17 regulariser on every fully connected layer and conv kernel.
        fc_init, conv_init: uniform init ranges (official: FC 1, conv 0.5).
        bias: give fully connected layers a trainable bias (official: none).
        pool_rule: pooling backward, ``"official"`` (1/p^2) or ``"threshold"`` (1/nu_pool), spec §3.6.
        check_inputs: check every ``forward`` input once: 0/1 spikes ``[T >= 2, B >= 1, *input]`` in
            the spec's layout, labels in range (a few reductions, :mod:`hm2bp.checks`). ``False``
            skips the checks (the layers inside never re-check the trains they pass on).
    """

    def __init__(
        self,
        spec: str,
        thresholds: list[float],
        *,
        tau_m: float = 64.0,
        tau_s: float = 8.0,
        refractory: int = 2,
        output_lateral_inhibition: float = 0.0,
        spsp: str = "exact",
        effect_ratio: bool = True,
        side_effect: bool = True,
        lateral_factor: bool = True,
        target_injection: float | None = None,
        reg_lambda: float = 0.0,
        reg_beta: float = 0.0,
        reg_limit: float = 8.0,
        fc_init: float = 1.0,
        conv_init: float = 0.5,
        bias: bool = False,
        pool_rule: str = "official",
        check_inputs: bool = True,
    ) -> None:
        super().__init__()
        # the constructor arguments, plain values (hm2bp.nir stores them in exported graphs)
        self.init_kwargs = dict(
            spec=str(spec), thresholds=[float(t) for t in thresholds], tau_m=float(tau_m), tau_s=float(tau_s),
            refractory=int(refractory), output_lateral_inhibition=float(output_lateral_inhibition), spsp=spsp,
            effect_ratio=bool(effect_ratio), side_effect=bool(side_effect), lateral_factor=bool(lateral_factor),
            target_injection=None if target_injection is None else float(target_injection),
            reg_lambda=float(reg_lambda), reg_beta=float(reg_beta), reg_limit=float(reg_limit),
            fc_init=float(fc_init), conv_init=float(conv_init), bias=bool(bias), pool_rule=pool_rule,
        )
        self.spec = spec
        self.check_inputs = bool(check_inputs)
        self.input_shape, layer_specs = parse_spec(spec)
        if isinstance(thresholds, (int, float)) or len(thresholds) != len(layer_specs):
            n = 1 if isinstance(thresholds, (int, float)) else len(thresholds)
            raise ConfigError(
                f"model.network.init_args.thresholds: network spec {spec!r} has {len(layer_specs)} layers but "
                f"{n} thresholds were given; give one threshold per layer"
            )
        for k, thr in enumerate(thresholds):
            if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not thr > 0 or thr == float("inf"):
                raise ConfigError(
                    f"model.network.init_args.thresholds[{k}]={thr!r} must be a positive finite number "
                    f"(the firing threshold of layer {k + 1} of {spec!r})"
                )
        common = dict(tau_m=tau_m, tau_s=tau_s, refractory=refractory, spsp=spsp)
        rule = dict(effect_ratio=effect_ratio, side_effect=side_effect)
        self.layers = nn.ModuleDict()
        shape = self.input_shape
        counters = {"fc": 0, "conv": 0, "pool": 0}
        for k, (ls, thr) in enumerate(zip(layer_specs, thresholds)):
            last = k == len(layer_specs) - 1
            counters[ls.kind] += 1
            name = "output" if last else f"{ls.kind}{counters[ls.kind]}"
            if ls.kind == "fc":
                n_in = int(torch.tensor(shape).prod())
                layer = SpikingLinear(
                    n_in,
                    ls.size,
                    thr,
                    lateral_inhibition=output_lateral_inhibition if last else 0.0,
                    lateral_factor=lateral_factor,
                    target_injection=target_injection if last else None,
                    reg_lambda=reg_lambda,
                    reg_beta=reg_beta,
                    reg_limit=reg_limit,
                    init_range=fc_init,
                    bias=bias,
                    **common,
                    **rule,
                )
                shape = (ls.size,)
            else:
                conv_rule = dict(rule, reg_lambda=reg_lambda, reg_beta=reg_beta, reg_limit=reg_limit)  # H17 on kernels
                layer, shape = self._build_conv_or_pool(ls, shape, thr, common, conv_rule, conv_init, pool_rule)
            self.layers[name] = layer
        self.num_classes = layer_specs[-1].size

    @staticmethod
    def _build_conv_or_pool(ls, shape, thr, common, rule, conv_init, pool_rule):
        from hm2bp.layers import conv as _conv  # noqa: F401  (conv layers live in layers/conv.py)

        return _conv.build_from_spec(ls, shape, thr, common, rule, conv_init, pool_rule)

    @classmethod
    def from_spec(cls, spec: str, thresholds: list[float], **kwargs) -> "SpikingNetwork":
        """Build from a spec string, e.g. ``from_spec("784-800-10", thresholds=[20, 8])``."""
        return cls(spec, thresholds, **kwargs)

    @property
    def num_inputs(self) -> int:
        return int(torch.tensor(self.input_shape).prod())

    @property
    def layer_names(self) -> list[str]:
        return list(self.layers.keys())

    def accepts_layout(self, shape: tuple[int, ...]) -> bool:
        """Whether per-sample inputs of ``shape`` fit: the spec's input shape; for a vector input any
        shape with as many elements (images are flattened channel-major); for an image input also
        its flat vector and, for ``HxW``, ``1xHxW``."""
        shape, expected = tuple(shape), tuple(self.input_shape)
        n = 1
        for s in shape:
            n *= s
        if shape == expected:
            return True
        if len(expected) == 1:
            return n == self.num_inputs
        return shape == (self.num_inputs,) or (len(expected) == 2 and shape == (1, *expected))

    def check_input(self, x: Tensor, target: Tensor | None = None) -> None:
        """One :class:`~hm2bp.errors.InputError` if ``x`` is not 0/1 spikes ``[T >= 2, B >= 1, *input]``
        in this network's layout, or ``target`` is not ``[B]`` class indices (a few reductions)."""
        where = f"SpikingNetwork {self.spec!r}"
        check_spikes(x, where)
        if not self.accepts_layout(x.shape[2:]):
            raise InputError(
                f"{where} expects time-first inputs [T, B, {'x'.join(map(str, self.input_shape))}], got shape "
                f"{tuple(x.shape)}; check the spec's input size and that time comes first"
            )
        if target is not None:
            check_labels(target, self.num_classes, x.shape[1], where)

    def forward(self, x: Tensor, target: Tensor | None = None, return_all: bool = False):
        """``x`` ``[T, B, *input]`` spikes -> output spikes ``[T, B, classes]``.

        ``target`` ``[B]`` reaches the output layer (target injection, lateral factor).
        With ``return_all`` returns ``{layer name: spikes [T, B, ...]}`` in order. Layers (fully
        connected, conv and pool) hand each other 1-byte trains, their spike index lists and
        differentiable counts (the count-level semantics of HM2-BP), so their entries are
        ``bool``; the output layer's trains are float and carry the gradient. Inputs are checked
        first (:meth:`check_input`) unless ``check_inputs`` is off.
        """
        if self.check_inputs:
            self.check_input(x, target)
        T, B = x.shape[:2]
        expected = self.input_shape
        out = {}
        # counts is not None while h holds a count-level layer's bool spikes (every layer is
        # count-level: conv and pool layers too); index: the ascending flat spike list of h
        h, counts, index = x, None, None
        names = self.layer_names
        for name, layer in self.layers.items():
            if isinstance(layer, SpikingLinear):
                if counts is None:
                    h, counts = spikes_with_counts(h.reshape(T, B, -1))  # channel-major flattening (§10.1)
                    index = None
                elif h.dim() > 3:  # flatten a feature map: the same spike list, counts [B, C H W]
                    h, counts = h.reshape(T, B, -1), counts.reshape(B, -1)
                h, counts, index = layer(h, target if name == "output" else None, counts=counts, index=index,
                                         count_level=True)
                if name == names[-1]:
                    h, counts = as_trains(h, counts), None
            else:
                if counts is None:
                    if h.dim() == 3 and len(expected) > 1 and name == names[0]:
                        h = h.reshape(T, B, *expected)
                    if h.dim() == 4:  # [T, B, H, W] single-channel image
                        h = h.unsqueeze(2)
                    h, counts = spikes_with_counts(h)
                    index = None
                h, counts, index = layer(h, counts=counts, index=index, count_level=True, check=False)
            if return_all:
                out[name] = h
        return out if return_all else h
