"""``FiringRateMonitor``: logged values against a recomputation, cadence, warnings, DDP exactness."""
from __future__ import annotations

import warnings

import pytest
import pytorch_lightning as pl
import torch

from hm2bp.callbacks import FiringRateMonitor, SilentNetworkWarning
from tests.helpers.digits import digits_data, digits_model, tiny_trainer
from tests.helpers.recording import RecordingLogger, expected_stats, expected_target

LAYERS = ("fc1", "output")


def test_train_keys_follow_log_cadence_and_match_recomputation(tmp_path, spy):
    logger = RecordingLogger()
    trainer = tiny_trainer(tmp_path, [FiringRateMonitor(), spy], logger=logger, limit_train_batches=5)
    trainer.fit(digits_model(), digits_data())
    rows = [(step, m) for step, m in logger.rows if "spikes/fc1/rate" in m]
    # log_every_n_steps=2 over 5 batches: logged after batches 1 and 3, each over its 2-batch window
    assert [step for step, _ in rows] == [1, 3]
    for (step, metrics), window in zip(rows, ([0, 1], [2, 3])):
        batches = [spy.train[i] for i in window]
        for layer in LAYERS:
            want = expected_stats(batches, layer)
            for key in ("rate", "silent_frac", "saturated_frac"):
                assert metrics[f"spikes/{layer}/{key}"] == pytest.approx(want[key], rel=1e-6), (step, layer, key)
        want_t = expected_target(batches)
        for key, v in want_t.items():
            assert metrics[f"spikes/output/{key}"] == pytest.approx(v, rel=1e-6)
    # no spike key at non-logging steps
    assert all("spikes/fc1/rate" not in m for step, m in logger.rows if step not in (1, 3))


def test_val_keys_cover_the_whole_epoch_but_not_the_sanity_check(tmp_path, spy):
    logger = RecordingLogger()
    trainer = tiny_trainer(tmp_path, [FiringRateMonitor(), spy], logger=logger, limit_val_batches=3,
                           num_sanity_val_steps=2)
    trainer.fit(digits_model(), digits_data())
    assert len(spy.val) == 3
    val_rows = [m for _, m in logger.rows if "spikes/fc1/val_rate" in m]
    assert len(val_rows) == 1 and "val/acc" in val_rows[0]
    for layer in LAYERS:
        want = expected_stats(spy.val, layer)
        for key in ("rate", "count", "silent_frac", "dead_frac", "saturated_frac"):
            assert val_rows[0][f"spikes/{layer}/val_{key}"] == pytest.approx(want[key], rel=1e-6), (layer, key)
    for key, v in expected_target(spy.val).items():
        assert val_rows[0][f"spikes/output/val_{key}"] == pytest.approx(v, rel=1e-6)


def test_test_stage_keys(tmp_path):
    trainer = tiny_trainer(tmp_path, [FiringRateMonitor()], limit_test_batches=1)
    trainer.test(digits_model(), digits_data())
    assert {"spikes/fc1/test_rate", "spikes/output/test_target_error"} <= set(trainer.callback_metrics)


def test_layer_subset_and_unknown_layer(tmp_path):
    trainer = tiny_trainer(tmp_path, [FiringRateMonitor(layers=["output"])], limit_train_batches=2)
    trainer.fit(digits_model(), digits_data())
    keys = set(trainer.callback_metrics)
    assert "spikes/output/val_rate" in keys and not any(k.startswith("spikes/fc1/") for k in keys)
    trainer = tiny_trainer(tmp_path, [FiringRateMonitor(layers=["fc7"])])
    with pytest.raises(ValueError, match=r"fc7.*its layers: \['fc1', 'output'\]"):
        trainer.fit(digits_model(), digits_data())


def test_metric_objects_follow_the_module_device(tmp_path):
    monitor = FiringRateMonitor()
    trainer = tiny_trainer(tmp_path, [monitor], limit_train_batches=2)
    model = digits_model()
    trainer.fit(model, digits_data())
    for stage in ("train", "val"):
        for m in monitor._stats[stage].values():
            assert m.device == model.device
            assert m.neuron_spikes.device == model.device


# ---------------------------------------------------------------------- silent warnings
def _silent_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, SilentNetworkWarning)]


def test_warns_once_about_a_silent_layer(tmp_path):
    trainer = tiny_trainer(tmp_path, [FiringRateMonitor()], max_epochs=2, limit_train_batches=2)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer.fit(digits_model(thresholds=(1e6, 1e6)), digits_data())
    msgs = _silent_warnings(record)
    layer_msgs = [m for m in msgs if "layer 'fc1' was SILENT" in m]
    assert len(layer_msgs) == 1, msgs  # two validation epochs, one warning
    msg = layer_msgs[0]
    assert "none of its 100 neurons fired" in msg and "32 samples x 100 steps" in msg
    assert "also silent: 'output'" in msg
    assert "lower its threshold (now 1e+06: SpikingNetwork thresholds[0])" in msg
    assert "fc_init" in msg
    target_msgs = [m for m in msgs if "target (labelled) output neuron" in m]
    assert len(target_msgs) == 1 and "all 32 validation samples" in target_msgs[0]
    assert len(msgs) == 2


def test_warns_about_a_silent_output_layer_and_target(tmp_path):
    trainer = tiny_trainer(tmp_path, [FiringRateMonitor()], limit_train_batches=2)
    with pytest.warns(SilentNetworkWarning) as record:
        trainer.fit(digits_model(thresholds=(10.0, 1e6)), digits_data())
    msgs = [str(w.message) for w in record if issubclass(w.category, SilentNetworkWarning)]
    assert any("layer 'output' was SILENT" in m and "Its input, layer 'fc1', fired at" in m
               and "thresholds[1]" in m for m in msgs), msgs
    assert any("target (labelled) output neuron of layer 'output'" in m and "desired count 17.5" in m for m in msgs)


def test_no_warning_on_a_healthy_network(tmp_path):
    trainer = tiny_trainer(tmp_path, [FiringRateMonitor()], limit_train_batches=2)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer.fit(digits_model(), digits_data())
    assert _silent_warnings(record) == []
    assert trainer.callback_metrics["spikes/fc1/val_dead_frac"] < 1
    assert trainer.callback_metrics["spikes/output/val_target_silent_frac"] < 1


# ---------------------------------------------------------------------- DDP (ddp_fork, gloo)
class _DestroyProcessGroup(pl.Callback):
    def teardown(self, trainer, pl_module, stage):
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()


def test_two_process_validation_equals_one_process(tmp_path):
    """Each rank sees half of the 70 validation samples; the logged values are the global ones."""
    kwargs = dict(limit_val_batches=1.0)
    single = tiny_trainer(tmp_path / "one", [FiringRateMonitor()], **kwargs)
    single.validate(digits_model(), digits_data(val_size=70))
    ddp = tiny_trainer(tmp_path / "two", [FiringRateMonitor(), _DestroyProcessGroup()], devices=2,
                       strategy="ddp_fork", **kwargs)
    ddp.validate(digits_model(), digits_data(val_size=70))
    keys = sorted(k for k in single.callback_metrics if k.startswith("spikes/"))
    assert len(keys) == 2 * 5 + 3
    for key in keys:
        assert float(ddp.callback_metrics[key]) == pytest.approx(float(single.callback_metrics[key]), rel=1e-6), key
    assert float(single.callback_metrics["spikes/fc1/val_rate"]) > 0
