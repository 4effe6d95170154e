"""``SpikingNetwork``: a stack of HM2-BP spiking layers built from a compact spec string.

Spec grammar (dash separated): an input token, then layers.

* input: ``784`` (a vector) or ``28x28`` / ``2x34x34`` (an image, channels first);
* ``800``: fully connected layer of 800 neurons (``SpikingLinear``);
* ``15C5``: convolution with 15 kernels of 5x5 (``SpikingConv2d``);
* ``P2``: 2x2 spiking pooling (``SpikingPool2d``).

The last token is the output layer. ``thresholds`` gives one threshold per layer; the network
builds each layer's records (``docs/algorithm.md``, "Neuron model", "Weight update") from its
flat arguments once.
Layers are named ``conv1, pool1, ..., fc1, ..., output`` (the names of ``spikes/<layer>/...`` logs).
Shapes are time-first: input ``[T, B, *input_shape]`` -> output ``[T, B, classes]``.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from hm2bp.checks import check_labels, check_spikes
from hm2bp.errors import ConfigError, InputError
from hm2bp.functional import HM2BPRule, LIFParams
from hm2bp.functional.params import CONV_THRESHOLD_EPS
from hm2bp.layers import SpikingConv2d, SpikingLinear, SpikingPool2d
from hm2bp.layers.neurons import psp_option
from hm2bp.layers.spikes import Spikes

_CONV = re.compile(r"^(\d+)[cC](\d+)$")
_POOL = re.compile(r"^[pP](\d+)$")
_SHAPE = re.compile(r"^\d+(x\d+)*$")


@dataclass(frozen=True)
class LayerSpec:
    kind: str  # "fc" | "conv" | "pool"
    size: int  # neurons (fc), kernels (conv) or pool window p (pool)
    kernel_size: int = 0  # conv kernel k (k x k)


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
        if layers[-1].size <= 0 or (layers[-1].kind == "conv" and layers[-1].kernel_size <= 0):
            raise ConfigError(f"{key}: network spec {spec!r}: layer token {tok!r} must have positive sizes")
    if layers[-1].kind != "fc":
        raise ConfigError(f"{key}: network spec {spec!r}: the output layer must be fully connected")
    return shape, layers


def build_from_spec(ls: LayerSpec, shape, neuron: LIFParams, rule: HM2BPRule, init_range: float, pool_rule: str):
    """Build the conv (``15C5``) or pool (``P2``) layer of a ``SpikingNetwork`` spec token.

    ``shape`` is the input ``(C, H, W)`` (a 2-D ``(H, W)`` input is one channel); ``neuron`` and
    ``rule`` the layer's records (a pool layer reads the rule's ``effect_ratio`` only);
    ``init_range`` that of the conv kernels. Returns ``(layer, output shape (C, H, W))``.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3:
        raise ConfigError(
            f"a {ls.kind} layer needs an image input such as '28x28' or '2x34x34' (channels first), "
            f"but its input has shape {shape}; conv/pool layers cannot follow a fully connected layer"
        )
    if ls.kind == "conv":
        layer = SpikingConv2d(shape[0], ls.size, ls.kernel_size, neuron, rule, init_range=init_range)
    elif ls.kind == "pool":
        layer = SpikingPool2d(ls.size, neuron, rule, pool_rule=pool_rule)
    else:
        raise ValueError(f"build_from_spec builds conv or pool layers, got {ls.kind!r}")
    new_shape = layer.output_shape(shape)
    if min(new_shape[1:]) <= 0:
        raise ConfigError(f"layer {ls} does not fit its input of shape {shape} (output would be {new_shape})")
    return layer, new_shape


def layer_names(layer_specs: list[LayerSpec]) -> list[str]:
    """``conv1, pool1, ..., fc1, ..., output``: the layers' names (of ``spikes/<layer>/...`` logs)."""
    counters = {"fc": 0, "conv": 0, "pool": 0}
    names = []
    for ls in layer_specs[:-1]:
        counters[ls.kind] += 1
        names.append(f"{ls.kind}{counters[ls.kind]}")
    return [*names, "output"]


def neuron_records(spec: str, layer_specs: list[LayerSpec], thresholds, *, tau_m: float, tau_s: float,
                   refractory: int, psp: str = "exact", fc_eps: float = LIFParams.threshold_eps,
                   scan_backend: str = "auto", where: str = "SpikingNetwork") -> list[LIFParams]:
    """One :class:`LIFParams` per layer of a spec from the flat constants: ``thresholds[k]`` (checked
    first: one positive finite number per layer), the shared ``tau_m``, ``tau_s``, ``refractory``
    and ``psp``; ``threshold_eps`` is the official one of the layer's kind (conv 0, pooling 1e-6,
    fully connected ``fc_eps``); ``scan_backend`` is every layer's."""
    _check_thresholds(spec, thresholds, len(layer_specs))
    eps = {"conv": CONV_THRESHOLD_EPS, "pool": LIFParams.threshold_eps, "fc": fc_eps}
    return [LIFParams(thr, tau_m, tau_s, refractory, eps[ls.kind], psp, scan_backend, where=where)
            for ls, thr in zip(layer_specs, thresholds)]


_RULE_KEYS = ("effect_ratio", "side_effect", "lateral_factor", "output_lateral_inhibition", "target_injection",
              "reg_lambda", "reg_beta", "reg_limit")


def network_rules(*, effect_ratio: bool, side_effect: bool, lateral_factor: bool, output_lateral_inhibition: float,
                  target_injection: float | None, reg_lambda: float, reg_beta: float,
                  reg_limit: float) -> tuple[HM2BPRule, HM2BPRule]:
    """The two rule records of a ``SpikingNetwork``: ``(hidden, output)``. Hidden layers (and every
    conv kernel) get the switches and the regulariser; the output layer also its lateral
    inhibition, lateral factor (only with inhibition) and target injection."""
    hidden = HM2BPRule(effect_ratio=effect_ratio, side_effect=side_effect, reg_lambda=reg_lambda, reg_beta=reg_beta,
                       reg_limit=reg_limit, where="SpikingNetwork")
    output = dataclasses.replace(
        hidden, lateral_inhibition=output_lateral_inhibition, target_injection=target_injection,
        lateral_factor=lateral_factor and output_lateral_inhibition != 0.0, where="SpikingNetwork",
    )
    return hidden, output


def _check_thresholds(spec: str, thresholds, n_layers: int) -> None:
    """One positive finite threshold per layer, else one :class:`ConfigError` naming the entry."""
    if isinstance(thresholds, (int, float)) or len(thresholds) != n_layers:
        n = 1 if isinstance(thresholds, (int, float)) else len(thresholds)
        raise ConfigError(
            f"model.network.init_args.thresholds: network spec {spec!r} has {n_layers} layers but "
            f"{n} thresholds were given; give one threshold per layer"
        )
    for k, thr in enumerate(thresholds):
        if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not thr > 0 or thr == float("inf"):
            raise ConfigError(
                f"model.network.init_args.thresholds[{k}]={thr!r} must be a positive finite number "
                f"(the firing threshold of layer {k + 1} of {spec!r})"
            )


class SpikingNetwork(nn.Module):
    """Feed-forward spiking network trained with HM2-BP.

    The flat arguments (one YAML key each) are turned into records once: one
    :class:`~hm2bp.functional.LIFParams` per layer (``thresholds[k]``, ``tau_m``, ``tau_s``,
    ``refractory``, ``psp``; ``threshold_eps`` 0 for conv layers, 1e-6 otherwise, as the official
    program) and two :class:`~hm2bp.functional.HM2BPRule` records: one for the hidden layers and
    one for the output layer (with its lateral inhibition, lateral factor and target injection).
    :meth:`from_records` builds a network from given neuron records instead.

    Args:
        spec: architecture string (module docstring), e.g. ``"784-800-10"``.
        thresholds: one firing threshold per layer (official MNIST MLP: ``[20, 8]``).
        tau_m, tau_s, refractory: neuron constants in steps for every layer (official 64, 8, 2).
        output_lateral_inhibition: the output layer's ``lateral_inhibition``, ``w0`` of its all-to-all
            inhibition (official 1; ``docs/algorithm.md``, "Lateral inhibition").
        psp: S-PSP convention of every layer (``"exact"``, ``"official"`` or ``"paper"``;
            ``docs/algorithm.md``, "Spike-train-level PSP"). ``spsp`` is its old name, kept as an alias.
        effect_ratio, side_effect, lateral_factor: HM2-BP rule switches (``docs/algorithm.md``, "Weight update", "Lateral inhibition").
        target_injection: desired count of the injected train for a silent target (official 35);
            ``None`` turns injection off.
        reg_lambda, reg_beta, reg_limit: weight-norm regulariser on every fully connected layer and conv kernel.
        fc_init, conv_init: uniform init ranges (official: FC 1, conv 0.5).
        bias: give fully connected layers a trainable bias (official: none).
        pool_rule: pooling backward, ``"official"`` (1/p^2) or ``"threshold"`` (1/nu_pool), "Convolution and pooling".
        check_inputs: check every ``forward`` input once: 0/1 spikes ``[T >= 2, B >= 1, *input]`` in
            the spec's layout, labels in range (a few reductions, :mod:`hm2bp.checks`). ``False``
            skips the checks (the layers inside never re-check the trains they pass on).
        scan_backend: what runs every layer's time-step scans, ``"auto"`` (fused Triton kernels on
            CUDA when Triton is installed), ``"eager"`` or ``"triton"`` (``LIFParams.scan_backend``).
            A run-time choice like ``check_inputs``: not part of the stored configuration.
    """

    def __init__(
        self,
        spec: str,
        thresholds: list[float],
        *,
        tau_m: float = LIFParams.tau_m,
        tau_s: float = LIFParams.tau_s,
        refractory: int = LIFParams.refractory,
        output_lateral_inhibition: float = 0.0,
        psp: str | None = None,
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
        spsp: str | None = None,
        scan_backend: str = "auto",
    ) -> None:
        super().__init__()
        psp = psp_option("SpikingNetwork", psp, spsp)
        rules = network_rules(effect_ratio=effect_ratio, side_effect=side_effect, lateral_factor=lateral_factor,
                              output_lateral_inhibition=output_lateral_inhibition, target_injection=target_injection,
                              reg_lambda=reg_lambda, reg_beta=reg_beta, reg_limit=reg_limit)
        # the constructor arguments, plain values (hm2bp.nir stores them in exported graphs)
        config = dict(
            spec=str(spec), thresholds=[float(t) for t in thresholds], tau_m=float(tau_m), tau_s=float(tau_s),
            refractory=int(refractory), output_lateral_inhibition=float(output_lateral_inhibition), psp=psp,
            effect_ratio=bool(effect_ratio), side_effect=bool(side_effect), lateral_factor=bool(lateral_factor),
            target_injection=None if target_injection is None else float(target_injection),
            reg_lambda=float(reg_lambda), reg_beta=float(reg_beta), reg_limit=float(reg_limit),
            fc_init=float(fc_init), conv_init=float(conv_init), bias=bool(bias), pool_rule=pool_rule,
        )
        _, layer_specs = parse_spec(spec)
        neurons = neuron_records(spec, layer_specs, thresholds, tau_m=tau_m, tau_s=tau_s, refractory=refractory, psp=psp,
                                 scan_backend=scan_backend)
        self._assemble(config, neurons, rules, check_inputs)

    @classmethod
    def from_records(cls, neurons: Sequence[LIFParams], *, check_inputs: bool = True, **config) -> "SpikingNetwork":
        """A network of ``config`` (constructor arguments, as in ``init_kwargs``) whose layers take the
        neuron records ``neurons``, one per layer, as they are (e.g. the constants of an imported
        NIR graph, :func:`hm2bp.nir.import_nir`); ``thresholds``, ``tau_m``, ``tau_s``,
        ``refractory`` and ``psp`` in ``config`` are replaced by theirs."""
        defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()
                    if p.default is not inspect.Parameter.empty and k not in ("check_inputs", "spsp", "scan_backend")}
        first = neurons[0]
        config = {**defaults, **config, "thresholds": [n.threshold for n in neurons], "tau_m": first.tau_m,
                  "tau_s": first.tau_s, "refractory": first.refractory, "psp": first.psp}
        config.pop("spsp", None)  # graphs of older versions name psp so
        net = cls.__new__(cls)
        nn.Module.__init__(net)
        net._assemble(config, list(neurons), network_rules(**{k: config[k] for k in _RULE_KEYS}), check_inputs)
        return net

    def _assemble(self, config: dict, neurons: list[LIFParams], rules: tuple[HM2BPRule, HM2BPRule],
                  check_inputs: bool) -> None:
        """Build the layers of ``config["spec"]`` from the neuron records and the rule records
        ``(hidden, output)``."""
        self.init_kwargs = config
        self.spec = config["spec"]
        self.check_inputs = bool(check_inputs)
        self.input_shape, layer_specs = parse_spec(self.spec)
        if len(neurons) != len(layer_specs):
            raise ConfigError(f"network spec {self.spec!r} has {len(layer_specs)} layers but {len(neurons)} neuron "
                              f"records were given")
        hidden, output = rules
        self.layers = nn.ModuleDict()
        shape = self.input_shape
        for name, ls, neuron in zip(layer_names(layer_specs), layer_specs, neurons):
            rule = output if name == "output" else hidden
            if ls.kind == "fc":
                n_in = int(torch.tensor(shape).prod())
                layer = SpikingLinear(n_in, ls.size, neuron, rule, init_range=config["fc_init"], bias=config["bias"])
                shape = (ls.size,)
            else:
                layer, shape = build_from_spec(ls, shape, neuron, rule, config["conv_init"], config["pool_rule"])
            self.layers[name] = layer
        self.num_classes = layer_specs[-1].size

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
        """``x`` ``[T, B, *input]`` spikes -> output spikes ``[T, B, classes]``, float, differentiable.

        ``target`` ``[B]`` reaches the output layer (target injection, lateral factor). With
        ``return_all`` returns ``{layer name: spikes [T, B, ...]}`` in order: the hidden layers'
        trains as ``bool``, the output layer's as float (they carry the gradient). Layers hand each
        other :class:`~hm2bp.layers.spikes.Spikes` (1-byte trains, differentiable counts, spike
        index; :meth:`forward_spikes`). Inputs are checked first (:meth:`check_input`) unless
        ``check_inputs`` is off.
        """
        if self.check_inputs:
            self.check_input(x, target)
        layers = self.forward_spikes(x, target)
        output = layers[self.layer_names[-1]].float_trains()
        if not return_all:
            return output
        out = {name: s.trains for name, s in layers.items()}
        out[self.layer_names[-1]] = output
        return out

    def forward_spikes(self, x: Tensor, target: Tensor | None = None) -> dict[str, Spikes]:
        """``x`` ``[T, B, *input]`` (0/1, unchecked) -> ``{layer name: Spikes}``, layer by layer.

        The input takes the spec's layout first: ``[T, B, C, H, W]`` for an image spec (a flat or
        ``H x W`` input is reshaped; "Input layout"), ``[T, B, N]`` for a vector spec; a fully
        connected layer after a feature map sees it flattened channel-major.
        """
        T, B = x.shape[:2]
        image = len(self.input_shape) > 1
        spikes = Spikes.of(x).reshape(*(_image_shape(self.input_shape) if image else (self.num_inputs,)))
        out = {}
        for name, layer in self.layers.items():
            if isinstance(layer, SpikingLinear) and spikes.dim() > 3:
                spikes = spikes.reshape(-1)
            spikes = layer(spikes, target if name == "output" else None)
            out[name] = spikes
        return out


def _image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(C, H, W)`` of an image input spec (``H x W`` is one channel)."""
    return tuple(shape) if len(shape) == 3 else (1, *shape)
