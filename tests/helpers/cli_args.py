"""Command-line arguments of the tiny CLI fits: reachable spike counts at short T, the smoke fits'
scaled thresholds and the shared data's smaller splits."""
from __future__ import annotations

from pathlib import Path

from hm2bp.checks import max_spike_count


def count_args(time_steps: int, injection: bool = True, refractory: int = 2) -> list[str]:
    """Desired/undesired/margin (and the injected count) that an output neuron can reach at ``time_steps``:
    the experiments' 35/5/5 are for T = 400 and are refused at the short T of the tests."""
    top = max_spike_count(time_steps, refractory)
    desired, low = max(2, int(0.8 * top)), 1
    args = ["--model.loss.init_args.desired", str(desired), "--model.loss.init_args.undesired", str(low),
            "--model.loss.init_args.margin", str(low)]
    return args + (["--model.network.init_args.target_injection", str(desired)] if injection else [])


# the CLI tests' tiny fits: an active network at T=20 whose counts are reachable (an output neuron fires at most 7 times)
SMALL = ["--data.init_args.time_steps", "20", "--data.init_args.batch_size", "8",
         "--model.network.init_args.thresholds", "[5,4]", "--model.network.init_args.target_injection", "6",
         "--model.loss.init_args.desired", "6", "--model.loss.init_args.undesired", "1",
         "--model.loss.init_args.margin", "1"]


# the shared test data holds subsets (N-MNIST: 1,000 training files): smaller validation splits
EXTRA = {"nmnist_mlp": ["--data.init_args.val_size", "100"]}
# the authors' TI46 trains start with silence: hardly an input spike in the first 150 steps
SMOKE_EXTRA = {"ti46_mlp": ["--data.init_args.time_steps", "700"]}


def tiny_fit_args(config: Path, tmp_path: Path) -> list[str]:
    return [
        "fit",
        "--config", str(config),
        "--trainer.accelerator", "cpu",
        "--trainer.devices", "1",
        "--trainer.max_epochs", "1",
        "--trainer.limit_train_batches", "2",
        # "1" would parse as the float 1.0 (= 100% of the batches): use 2
        "--trainer.limit_val_batches", "2",
        "--trainer.limit_test_batches", "2",
        "--trainer.logger", "false",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(tmp_path),
        "--data.init_args.time_steps", "30",
        "--data.init_args.batch_size", "4",
        *count_args(30, injection="bptt" not in config.stem),
    ]


# At T = 30 the experiments' thresholds (made for T = 400) leave every layer silent; a tenth of
# them makes every layer of every experiment spike in the smoke fits (a quarter leaves the CNN output silent).
SMOKE_THRESHOLD_SCALE = 0.1


def smoke_fit_args(config: Path, tmp_path: Path, thresholds: list[float]) -> list[str]:
    """:func:`tiny_fit_args` with ``thresholds`` (the config's) scaled by :data:`SMOKE_THRESHOLD_SCALE`
    and a :class:`FitRecorder` in the callbacks."""
    scaled = [round(float(t) * SMOKE_THRESHOLD_SCALE, 4) for t in thresholds]
    return [*tiny_fit_args(config, tmp_path), *EXTRA.get(config.stem, []), *SMOKE_EXTRA.get(config.stem, []),
            "--model.network.init_args.thresholds", str(scaled),
            "--trainer.callbacks+=tests.helpers.recording.FitRecorder"]
