"""Checkpoints that load themselves: ``SpikingClassifier.load_from_checkpoint(path)`` and ``hm2bp.load``
(a checkpoint file or a run folder) give the trained model; old checkpoints load with the network
given; bad paths give one clear error; ``import hm2bp`` does not import Lightning."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hm2bp
from hm2bp import SpikeCountLoss, SpikingClassifier, SpikingNetwork
from hm2bp.errors import HM2BPError
from hm2bp.loading import run_checkpoint
from tests.helpers.cli_runs import small_digits_run
from tests.helpers.digits import digits_data, digits_model, tiny_trainer


def predict(model: SpikingClassifier, spikes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(counts ``[B, C]``, predictions ``[B]``) of ``model`` in eval mode."""
    model.eval()
    with torch.no_grad():
        counts = model(spikes)
    return counts, counts.argmax(-1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny digits fit in Python: (trained model, its checkpoint after the fit, a validation batch)."""
    tmp = tmp_path_factory.mktemp("fit")
    model, data = digits_model(), digits_data()
    trainer = tiny_trainer(tmp, callbacks=[], max_epochs=1)
    trainer.fit(model, data)
    ckpt = tmp / "trained.ckpt"
    trainer.save_checkpoint(ckpt)
    spikes = data.to_spikes(next(iter(data.val_dataloader())), "val")[0]  # [T, B, 64] spikes
    return model, ckpt, spikes


def test_checkpoint_loads_itself(trained):
    model, ckpt, spikes = trained
    loaded = SpikingClassifier.load_from_checkpoint(ckpt)
    assert isinstance(loaded.network, SpikingNetwork)
    assert loaded.network.init_kwargs == model.network.init_kwargs
    assert (loaded.loss.desired, loaded.loss.undesired, loaded.loss.margin) == (17.5, 2.5, 2.5)
    counts, preds = predict(model, spikes)
    assert counts.shape == (spikes.shape[1], 10) and counts.sum() > 0  # the classifier returns counts [B, C]
    assert model.network(spikes).shape == (*spikes.shape[:2], 10)  # the network returns trains [T, B, C]
    loaded_counts, loaded_preds = predict(loaded, spikes)
    assert torch.equal(loaded_counts, counts) and torch.equal(loaded_preds, preds)
    assert torch.equal(predict(hm2bp.load(ckpt), spikes)[0], counts)


def test_old_checkpoint_loads_with_the_network_given(trained, tmp_path):
    """Checkpoints of earlier versions: no network or loss settings (Python fits saved none; CLI fits
    saved the linked sizes and Lightning's instantiator)."""
    model, ckpt, spikes = trained
    counts = predict(model, spikes)[0]
    state = torch.load(ckpt, weights_only=True)
    cli_era = {k: state["hyper_parameters"][k] for k in ("num_inputs", "num_classes", "time_steps")}
    cli_era["_instantiator"] = "pytorch_lightning.cli.instantiate_module"
    for name, hparams in (("python.ckpt", None), ("cli.ckpt", cli_era)):
        old = dict(state)
        old.pop("hyper_parameters")
        old.pop("hparams_name", None)
        if hparams is not None:
            old["hyper_parameters"] = hparams
        path = tmp_path / name
        torch.save(old, path)
        network = SpikingNetwork(**model.network.init_kwargs)
        loaded = SpikingClassifier.load_from_checkpoint(path, network=network, loss=SpikeCountLoss(17.5, 2.5, 2.5))
        assert loaded.network is network
        assert torch.equal(predict(loaded, spikes)[0], counts)
        with pytest.raises(HM2BPError, match="does not hold the network's settings.*network=") as err:
            hm2bp.load(path)  # outside a run folder: nothing to rebuild the network from
        assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory) -> Path:
    """A tiny digits fit through the command line: its run folder (config.yaml, last and best checkpoints)."""
    return small_digits_run(tmp_path_factory.mktemp("runs"))


def test_run_folder_loads_best_checkpoint(cli_run):
    best = run_checkpoint(cli_run)
    assert best.parent == cli_run / "checkpoints" and best.name.startswith("epoch=")
    assert run_checkpoint(cli_run, "last") == cli_run / "checkpoints" / "last.ckpt"
    spikes = (torch.rand(30, 8, 64, generator=torch.Generator().manual_seed(0)) < 0.2).to(torch.uint8)
    # the trained model, as the best checkpoint saved it: the network of the run's config, its weights
    init = {"spec": "64-100-10", "thresholds": [5.0, 4.0], "output_lateral_inhibition": 1.0, "target_injection": 6.0}
    reference = SpikingNetwork(**init)
    weights = torch.load(best, weights_only=True)["state_dict"]
    reference.load_state_dict({k.removeprefix("network."): v for k, v in weights.items() if k.startswith("network.")})
    expected = reference(spikes).sum(0)
    assert not hm2bp.load(cli_run).training  # hm2bp.load gives the model in eval mode
    for model in (hm2bp.load(cli_run), SpikingClassifier.load_from_checkpoint(best), hm2bp.load(best)):
        counts, preds = predict(model, spikes)
        assert torch.equal(counts, expected) and torch.equal(preds, expected.argmax(-1))
    last = hm2bp.load(cli_run, checkpoint="last")
    last_weights = torch.load(cli_run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert torch.equal(last.network.layers["output"].weight, last_weights["network.layers.output.weight"])


def test_bad_paths_give_one_clear_error(tmp_path, cli_run):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    no_ckpt = tmp_path / "run-without-checkpoints"
    (no_ckpt / "checkpoints").mkdir(parents=True)
    (no_ckpt / "config.yaml").write_text((cli_run / "config.yaml").read_text())
    cases = {
        tmp_path / "missing.ckpt": "does not exist",
        tmp_path: "is not a run folder",
        text: "is not a checkpoint",
        no_ckpt: "no checkpoints/last.ckpt",
    }
    for path, message in cases.items():
        with pytest.raises(HM2BPError, match=message) as err:
            hm2bp.load(path)
        assert "\n" not in str(err.value), str(err.value)
    with pytest.raises(HM2BPError, match="'best' or 'last'"):
        hm2bp.load(cli_run, checkpoint="first")


def test_import_does_not_load_lightning():
    code = ("import hm2bp, sys; from hm2bp import SpikingNetwork; "
            "assert 'pytorch_lightning' not in sys.modules, 'import hm2bp loaded pytorch_lightning'; "
            "hm2bp.SpikingClassifier; assert 'pytorch_lightning' in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_settings_round_trip_and_refuse_foreign_classes():
    from hm2bp.baselines import BPTTNetwork
    from hm2bp.settings import build_module, module_settings

    net = BPTTNetwork("64-20-10", [5, 4], output_lateral_inhibition=1.0)
    rebuilt = SpikingClassifier(module_settings(net), loss=module_settings(SpikeCountLoss(6, 1, 1)))
    assert isinstance(rebuilt.network, BPTTNetwork) and rebuilt.network.init_kwargs == net.init_kwargs
    assert rebuilt.loss.desired == 6.0
    assert module_settings(torch.nn.Linear(3, 4)) is None  # a tensor attribute: not stored, network= needed
    for path in ("os.system", "not_imported_anywhere.Net"):
        with pytest.raises(HM2BPError, match="class_path"):
            build_module({"class_path": path, "init_args": {}}, "model.network")
