"""Helpers shared by the tests (no test file imports another): CLI arguments and runs, the digits
model and trainer of the callback tests, recorded-count statistics, and the interop network."""
from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import Logger

from hm2bp import SpikeCountLoss, SpikingClassifier, SpikingNetwork
from hm2bp.checks import max_spike_count
from hm2bp.datamodules import DigitsDataModule
from hm2bp.functional import LIFParams, regulariser_grad, spsp
from hm2bp.functional.conv import conv_output_shape


def count_args(time_steps: int, injection: bool = True, refractory: int = 2) -> list[str]:
    """Desired/undesired/margin (and the injected count) that an output neuron can reach at ``time_steps``:
    the experiments' 35/5/5 are for T = 400 and are refused at the short T of the tests."""
    top = max_spike_count(time_steps, refractory)
    desired, low = max(2, int(0.8 * top)), 1
    args = ["--model.loss.init_args.desired", str(desired), "--model.loss.init_args.undesired", str(low),
            "--model.loss.init_args.margin", str(low)]
    return args + (["--model.network.init_args.target_injection", str(desired)] if injection else [])


REPO = Path(__file__).resolve().parents[1]
DIGITS = REPO / "configs" / "experiment" / "digits.yaml"
MNIST = REPO / "configs/experiment/mnist_mlp.yaml"
NMNIST = REPO / "configs/experiment/nmnist_mlp.yaml"
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
            "--trainer.callbacks+=tests.helpers.FitRecorder"]


class FitRecorder(Callback):
    """Network weights at the start and end of ``fit`` and every layer's spike total over the
    training batches: did the smoke fit train anything?"""

    def __init__(self) -> None:
        self.before: dict[str, torch.Tensor] = {}
        self.after: dict[str, torch.Tensor] = {}
        self.spikes: dict[str, float] = {}

    def on_fit_start(self, trainer, pl_module) -> None:
        self.before = {k: v.detach().clone() for k, v in pl_module.network.named_parameters()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        for name, counts in outputs["counts"].items():
            self.spikes[name] = self.spikes.get(name, 0.0) + float(counts.sum())

    def on_fit_end(self, trainer, pl_module) -> None:
        self.after = {k: v.detach().clone() for k, v in pl_module.network.named_parameters()}



# ----------------------------------------------------------------------------- digits runs through the CLI (DDP, resume, run folders)
GLOBAL_BATCH = 16
STEPS_PER_EPOCH = 6
EPOCHS = 2
# an active network at T=30 (the default thresholds are silent this short)
SMALL_T_ARGS = [
    "--data.init_args.time_steps", "30",
    "--data.init_args.batch_size", str(GLOBAL_BATCH),
    "--model.network.init_args.thresholds", "[5,4]",
    "--model.network.init_args.target_injection", "6",
    "--model.loss.init_args.desired", "6",
    "--model.loss.init_args.undesired", "1",
    "--model.loss.init_args.margin", "1",
    "--model.optimizer", "torch.optim.SGD",
    "--model.optimizer.init_args.lr", "0.002",
]


def callbacks_yaml(path: Path, extra: str = "", every_n_train_steps: int = 2) -> Path:
    """A trainer.callbacks list: last.ckpt every ``every_n_train_steps`` optimizer steps (mid-epoch resume
    points), in the run's own folder.

    A second ``--config`` merges list items of the same class with the first file's (here the
    digits config's val/acc ModelCheckpoint), so every inherited key is set explicitly.
    """
    path.write_text(
        "trainer:\n  callbacks:\n"
        "    - class_path: pytorch_lightning.callbacks.ModelCheckpoint\n"
        f"      init_args: {{monitor: null, every_n_train_steps: {every_n_train_steps}, save_top_k: 0, save_last: true,"
        " enable_version_counter: false}\n" + extra
    )
    return path


def digits_fit_args(root: Path, extra_callbacks: str = "", every_n_train_steps: int = 2, epochs: int = EPOCHS) -> list[str]:
    """A small digits fit whose run folder goes under ``root`` (metrics in ``<run>/csv/version_*``)."""
    root.mkdir(parents=True, exist_ok=True)
    return [
        "fit",
        "--config", str(DIGITS),
        "--config", str(callbacks_yaml(root / "callbacks.yaml", extra_callbacks, every_n_train_steps)),
        "--trainer.accelerator", "cpu",
        "--trainer.devices", "1",
        "--trainer.max_epochs", str(epochs),
        "--trainer.limit_train_batches", str(STEPS_PER_EPOCH),
        "--trainer.limit_val_batches", "3",
        "--trainer.logger", "pytorch_lightning.loggers.CSVLogger",
        "--trainer.logger.init_args.save_dir", str(root),  # replaced by the run folder
        "--trainer.logger.init_args.name", "csv",
        "--trainer.log_every_n_steps", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(root),
        "--test_after_fit", "false",
        *SMALL_T_ARGS,
    ]


def run_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if (p / "run.json").is_file())


def run_folder(root: Path) -> Path:
    """The one run folder under ``root``."""
    (run,) = run_folders(root)
    return run


def cli_env(extra_path: Path | None = None) -> dict:
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("HM2BP_RUN_DIR", None)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return env


def run_cli(args: list[str], cwd: Path, timeout: float = 240, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "hm2bp.cli", *args], cwd=cwd, env=env or cli_env(),
        capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, f"CLI failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return proc


def final_metrics(run: Path) -> dict[str, float]:
    """Last logged value of every column of the run's (newest) CSVLogger metrics.csv."""
    files = sorted(run.glob("csv/version_*/metrics.csv"), key=lambda p: p.stat().st_mtime)
    assert files, f"no metrics.csv under {run}"
    last: dict[str, float] = {}
    with open(files[-1]) as f:
        for row in csv.DictReader(f):
            for k, v in row.items():
                if v not in ("", None):
                    last[k] = float(v)
    return last


def network_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("network.")}


# ----------------------------------------------------------------------------- callback tests: the digits model ("boring SNN"), spies, expected statistics
T_DIGITS = 100


def digits_model(thresholds=(10.0, 8.0), seed: int = 0) -> SpikingClassifier:
    pl.seed_everything(seed, verbose=False)
    net = SpikingNetwork(
        "64-100-10", thresholds=list(thresholds), output_lateral_inhibition=1.0, target_injection=17.5
    )
    return SpikingClassifier(net, SpikeCountLoss(17.5, 2.5, 2.5))  # Adam at lr 5e-3 (the default)


def digits_data(batch_size: int = 16, **kwargs) -> DigitsDataModule:
    return DigitsDataModule(time_steps=T_DIGITS, batch_size=batch_size, **kwargs)


def tiny_trainer(tmp_path, callbacks, logger=False, **kwargs) -> pl.Trainer:
    opts = dict(
        accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=4, limit_val_batches=2,
        log_every_n_steps=2, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, default_root_dir=str(tmp_path),
    )
    opts.update(kwargs)
    return pl.Trainer(logger=logger, callbacks=callbacks, **opts)


class CountSpy(Callback):
    """Keeps copies of every step's ``counts`` (small nets only), excluding the sanity check."""

    def __init__(self) -> None:
        self.train: list[tuple[dict, torch.Tensor, int]] = []
        self.val: list[tuple[dict, torch.Tensor, int]] = []

    @staticmethod
    def _copy(outputs):
        return ({k: v.detach().cpu().clone() for k, v in outputs["counts"].items()},
                outputs["target"].detach().cpu().clone(), int(outputs["time_steps"]))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.train.append(self._copy(outputs))

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking:
            self.val.append(self._copy(outputs))


class RecordingLogger(Logger):
    """A Lightning logger that keeps every ``log_metrics`` call in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int | None, dict]] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics, step=None) -> None:
        self.rows.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass


def expected_stats(batches, layer: str, refractory: int = 2, tol: float = 0.1) -> dict[str, float]:
    """Independent recomputation of the logged statistics from recorded counts."""
    c = torch.cat([b[0][layer].reshape(b[0][layer].shape[0], -1) for b in batches]).double()  # [S, N]
    T = torch.cat([torch.full((b[0][layer].shape[0], 1), float(b[2])) for b in batches]).double()  # [S, 1]
    S, N = c.shape
    return {
        "rate": (c.sum() / (N * T.sum())).item(),
        "count": (c.sum() / (S * N)).item(),
        "silent_frac": (c == 0).double().mean().item(),
        "dead_frac": (c.sum(0) == 0).double().mean().item(),
        "saturated_frac": (c >= torch.ceil(0.9 * T / (refractory + 1) - 1e-9)).double().mean().item(),
        "neuron_rates": (c.sum(0) / T.sum()),
    }


def expected_target(batches, desired: float = 17.5) -> dict[str, float]:
    o = torch.cat([b[0]["output"] for b in batches]).double()
    y = torch.cat([b[1] for b in batches])
    o_t = o[torch.arange(len(y)), y]
    return {
        "target_count": o_t.mean().item(),
        "target_error": (o_t - desired).abs().mean().item(),
        "target_silent_frac": (o_t == 0).double().mean().item(),
    }


# ----------------------------------------------------------------------------- interop
def digits_network(refractory: int = 0, lateral: float = 0.0) -> SpikingNetwork:
    return SpikingNetwork("64-100-10", [10, 8], refractory=refractory, output_lateral_inhibition=lateral,
                          target_injection=8.75)


# ----------------------------------------------------------------------------- pairwise references of the functional tests
def random_post_train(rng, T, rate):
    """Spike times of a train that respects the official refractory period (``rng``: ``random.Random``)."""
    times, t = [], 1
    while True:
        t += 1 + LIFParams.refractory + int(rng.expovariate(rate))
        if t >= T:
            return times
        times.append(t)


def random_trains(rng, T, shape, silent_every=4, rate=(0.05, 0.15)):
    """Valid refractory trains ``[T, *shape]`` (float64), every ``silent_every``-th neuron silent."""
    n = 1
    for s in shape:
        n *= s
    out = torch.zeros(T, n, dtype=torch.float64)
    for j in range(n):
        if silent_every and j % silent_every == 0:
            continue
        for t in random_post_train(rng, T, rng.uniform(*rate)):
            out[t, j] = 1
    return out.view(T, *shape)


def random_conv_case(seed, T=70, B=2, c_in=2, hw=(6, 5), c_out=2, k=3, stride=1, padding=0):
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    pre = random_trains(rng, T, (B, c_in, *hw), silent_every=5)
    _, ho, wo = conv_output_shape((c_in, *hw), c_out, k, stride, padding)
    post = random_trains(rng, T, (B, c_out, ho, wo), silent_every=3)
    w = torch.randn(c_out, c_in, k, k, generator=g, dtype=torch.float64)
    grad = torch.randn(B, c_out, ho, wo, generator=g, dtype=torch.float64) * 4
    return pre, post, w, grad


def conv_reference(pre, post, w, grad, neuron, rule, convention, stride, padding, bias=None):
    """HM2-BP conv rule (docs/algorithm.md, "Weight update" applied per "Convolution and pooling") looped over (output position, tap) pairs."""
    T, B, c_in, H, W = pre.shape
    c_out, ho, wo = post.shape[2:]
    k = w.shape[-1]
    nu = neuron.threshold
    e = spsp(pre.reshape(T, B, -1), post.reshape(T, B, -1), convention=convention)  # [B, N_out, N_in]
    e_bias = spsp(torch.ones(T, B, 1, dtype=torch.float64), post.reshape(T, B, -1), convention=convention)
    o_in = pre.sum(0).reshape(B, -1)
    o_out = post.sum(0).reshape(B, -1)
    gw = torch.zeros_like(w)
    gb = torch.zeros(c_out, dtype=torch.float64)
    gin = torch.zeros(B, c_in * H * W, dtype=torch.float64)

    def taps(y, x):
        for ci in range(c_in):
            for ky in range(k):
                for kx in range(k):
                    iy, ix = y * stride + ky - padding, x * stride + kx - padding
                    if 0 <= iy < H and 0 <= ix < W:
                        yield ci, ky, kx, (ci * H + iy) * W + ix

    for b in range(B):
        for co in range(c_out):
            for y in range(ho):
                for x in range(wo):
                    o = (co * ho + y) * wo + x
                    delta = grad[b, co, y, x] / nu
                    active = o_out[b, o] > 0
                    if not rule.side_effect:
                        sigma = 0.0
                    elif active:
                        s = sum(w[co, ci, ky, kx] * e[b, o, i] for ci, ky, kx, i in taps(y, x))
                        if bias is not None:
                            s = s + bias[co] * e_bias[b, o, 0]
                        sigma = s / o_out[b, o] / nu
                    else:
                        s = sum(w[co, ci, ky, kx] for ci, ky, kx, _ in taps(y, x))
                        if bias is not None:
                            s = s + bias[co]
                        sigma = 0.5 * s / nu
                    for ci, ky, kx, i in taps(y, x):
                        e_oi = e[b, o, i] if active else (0.1 if o_in[b, i] > 0 else 0.0)
                        gw[co, ci, ky, kx] += delta * e_oi * (1 + sigma)
                        both = active and o_in[b, i] > 0
                        rho = e[b, o, i] / o_in[b, i] if both else 1.0
                        gin[b, i] += delta * w[co, ci, ky, kx] * (rho if rule.effect_ratio else 1.0)
                    if bias is not None:
                        gb[co] += delta * (e_bias[b, o, 0] if active else 0.1) * (1 + sigma)
    return gw + B * regulariser_grad(w, rule), gin.view(B, c_in, H, W), gb


def pool_reference(pre, post, grad, p, divisor, convention, effect_ratio):
    T, B, C, H, W = pre.shape
    ho, wo = post.shape[-2:]
    e = spsp(pre.reshape(T, B, -1), post.reshape(T, B, -1), convention=convention)
    o_in = pre.sum(0).reshape(B, -1)
    o_out = post.sum(0).reshape(B, -1)
    gin = torch.zeros(B, C, H, W, dtype=torch.float64)
    for b in range(B):
        for c in range(C):
            for y in range(ho):
                for x in range(wo):
                    o = (c * ho + y) * wo + x
                    for dy in range(p):
                        for dx in range(p):
                            iy, ix = y * p + dy, x * p + dx
                            i = (c * H + iy) * W + ix
                            both = o_out[b, o] > 0 and o_in[b, i] > 0
                            rho = e[b, o, i] / o_in[b, i] if (both and effect_ratio) else 1.0
                            gin[b, c, iy, ix] += grad[b, c, y, x] / divisor * rho
    return gin


