"""Parameter records: LIFParams / HM2BPRule presets, checks where the record is built, the psp
option and its old name, the lateral buffer."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import hm2bp
from hm2bp.errors import ConfigError
from hm2bp.functional import HM2BPRule, LIFParams, PSPKernel


def test_official_records_hold_the_authors_constants():
    neuron = LIFParams.official(20)
    assert (neuron.threshold, neuron.tau_m, neuron.tau_s, neuron.refractory, neuron.threshold_eps) == (
        20.0, 64.0, 8.0, 2, 1e-6)
    assert LIFParams.official(5, conv=True).threshold_eps == 0.0
    assert neuron.psp_kernel == PSPKernel.make("official", 64.0, 8.0, 2) and neuron.psp_kernel.shift == 2
    hidden = HM2BPRule.official()
    assert hidden.effect_ratio and hidden.side_effect and hidden.lateral_inhibition == 0.0
    assert hidden.target_injection is None and not hidden.lateral_factor
    out = HM2BPRule.official(output=True, reg_lambda=10.0)
    assert (out.lateral_inhibition, out.lateral_factor, out.target_injection, out.reg_lambda) == (
        1.0, True, 35.0, 10.0)
    assert not hasattr(out, "threshold") and not hasattr(out, "psp_kernel")  # nu and the kernel are the neuron's
    with pytest.raises(dataclasses.FrozenInstanceError):
        neuron.threshold = 1.0


def test_layers_take_their_defaults_from_the_record_and_match_the_official_rule():
    layer = hm2bp.SpikingLinear(10, 4, LIFParams(8.0, psp="official"),
                                HM2BPRule(lateral_inhibition=1.0, lateral_factor=True, target_injection=35.0))
    assert layer.neuron == LIFParams.official(8.0)
    assert (layer.tau_m, layer.tau_s, layer.refractory, layer.threshold_eps) == (64.0, 8.0, 2, 1e-6)
    assert layer.rule == HM2BPRule.official(output=True)
    conv = hm2bp.SpikingConv2d(1, 2, 3, 5.0)
    assert conv.neuron == dataclasses.replace(LIFParams.official(5.0, conv=True), psp="exact")


def test_psp_option_and_its_old_name_spsp():
    new = hm2bp.SpikingNetwork("8-4-2", [1.0, 1.0], psp="official")
    old = hm2bp.SpikingNetwork("8-4-2", [1.0, 1.0], spsp="official")
    for net in (new, old):
        assert net.init_kwargs["psp"] == "official"
        assert all(layer.psp == "official" and layer.spsp == "official" for layer in net.layers.values())
        assert net.layers["output"].psp_kernel.shift == 2
    assert hm2bp.SpikingPool2d(2, LIFParams(1.0, psp="paper")).psp_kernel == PSPKernel.make("paper")
    with pytest.raises(ConfigError, match="disagree"):
        hm2bp.SpikingNetwork("4-2", [1.0], psp="exact", spsp="official")
    with pytest.raises(ConfigError, match="psp must be one of"):
        hm2bp.SpikingLinear(4, 2, LIFParams(1.0, psp="nope"))


def test_lateral_matrix_is_a_buffer_that_moves_but_is_not_saved():
    net = hm2bp.SpikingNetwork("8-4-3", [1.0, 1.0], output_lateral_inhibition=1.0)
    assert sorted(net.state_dict()) == ["layers.fc1.weight", "layers.output.weight"]
    lateral = net.layers["output"].lateral
    assert torch.equal(lateral, -(1.0 - torch.eye(3)))
    net.double()
    assert net.layers["output"].lateral.dtype == torch.float64
    state = {k: v.clone() for k, v in net.state_dict().items()}
    fresh = hm2bp.SpikingNetwork("8-4-3", [1.0, 1.0], output_lateral_inhibition=1.0).double()
    fresh.load_state_dict(state, strict=True)  # a checkpoint without the lateral matrix loads as before
    assert torch.equal(fresh.layers["output"].lateral, net.layers["output"].lateral)
    layer = hm2bp.SpikingLinear(4, 3, 1.0)
    assert layer.lateral is None
    layer.set_recurrent(torch.full((3, 3), -0.5, dtype=torch.float64))
    assert layer.lateral.dtype == torch.float32 and "lateral" not in layer.state_dict()


def test_records_check_their_values_once_where_they_are_built():
    with pytest.raises(ConfigError, match=r"^LIFParams: tau_m=4\.0 must exceed tau_s=8\.0"):
        LIFParams(1.0, tau_m=4.0)
    with pytest.raises(ConfigError, match=r"^SpikingConv2d threshold=0 must be > 0"):
        hm2bp.SpikingConv2d(1, 2, 3, 0)
    with pytest.raises(ConfigError, match=r"^LIFParams tau_s=0 must be > 0"):
        LIFParams(1.0, tau_s=0)
    with pytest.raises(ConfigError, match=r"^HM2BPRule reg_beta=-1 must be >= 0"):
        HM2BPRule(reg_beta=-1)
    neuron = LIFParams(2.5, tau_m=20, tau_s=5, refractory=3.0, psp="official")
    assert (type(neuron.tau_m), type(neuron.refractory)) == (float, int)
    assert neuron.psp_kernel == PSPKernel.make("official", 20.0, 5.0, 3)
    shared = HM2BPRule(reg_lambda=1.0)
    a, b = hm2bp.SpikingLinear(4, 3, neuron, shared), hm2bp.SpikingLinear(3, 2, 1.0, shared)
    assert a.rule is b.rule and (a.threshold, b.threshold) == (2.5, 1.0)  # one rule, each layer its own nu
