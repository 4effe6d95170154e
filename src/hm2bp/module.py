r"""``SpikingClassifier``: the LightningModule that trains a spiking network with HM2-BP.

The network (any ``nn.Module`` mapping spikes ``[T, B, *in]`` to output spikes
``[T, B, classes]``) and the loss are injected. Output counts ``o = spikes.sum(0)`` feed the
loss; ``loss.backward()`` runs each layer's HM2-BP rule (no graph through time).

Prediction is the argmax of the output counts. Ties go to the lowest class index, so an
all-silent output predicts class 0, as the official program does (spec §3.1); the fraction of
all-silent samples is logged as ``<stage>/silent_output`` so such "correct by default" answers
are visible.

Multi-device semantics (docs/scaling.md): ``data.batch_size`` is the global batch, and the loss is
summed over samples, so one process computes :math:`g = \sum_{b \in \text{global batch}} g_b`. DDP
averages the ranks' gradients, giving :math:`g / W`; ``on_before_optimizer_step`` multiplies by the
world size :math:`W` once per optimizer step (after accumulation and the all-reduce), so every
update equals the single-process update with the same global batch, up to float summation order
(also for the H17 regulariser, which each rank adds once per local sample). Training metrics sync
on every step and their states travel in checkpoints (exact mid-epoch resume).
"""
from __future__ import annotations

import math

import pytorch_lightning as pl
from pytorch_lightning.strategies import DDPStrategy
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from hm2bp.checks import max_spike_count, number
from hm2bp.errors import ConfigError, TrainingDivergedError
from hm2bp.loss import SpikeCountLoss


def _official_factor(epoch: int) -> float:
    """The authors' schedule: 1, 1, 1/sqrt(2), 1/sqrt(3), ... over 0-based epochs."""
    return 1.0 / math.sqrt(max(epoch, 1))


def _inv_sqrt_factor(epoch: int) -> float:
    return 1.0 / math.sqrt(epoch + 1)


LR_SCHEDULES = {"official": _official_factor, "inv_sqrt_epoch": _inv_sqrt_factor, "constant": None}


class SpikingClassifier(pl.LightningModule):
    """Classification with spike-count outputs.

    Args:
        network: the spiking network (e.g. ``hm2bp.SpikingNetwork``).
        loss: count loss (default ``SpikeCountLoss(35, 5, 5)``).
        optimizer: ``"adam"`` (official, β 0.9/0.999, ε 1e-8) or ``"sgd"``.
        lr: learning rate for the batch-summed gradient (official batch-1 Adam: 1e-3).
        momentum: SGD momentum.
        lr_schedule: ``"official"`` (the authors' MLP and N-MNIST runs: lr for the first two
            epochs, then lr / sqrt(e) in 0-based epoch e, i.e. lr / sqrt(max(e, 1))),
            ``"inv_sqrt_epoch"`` (lr / sqrt(e + 1), the authors' CNN run) or ``"constant"``.
        num_inputs, num_classes, time_steps: linked from the datamodule by the CLI; when given they
            are checked against the network and every batch, with one clear error.
    """

    def __init__(
        self,
        network: nn.Module,
        loss: nn.Module | None = None,
        optimizer: str = "adam",
        lr: float = 5e-3,
        momentum: float = 0.0,
        lr_schedule: str = "inv_sqrt_epoch",
        num_inputs: int | None = None,
        num_classes: int | None = None,
        time_steps: int | None = None,
    ) -> None:
        super().__init__()
        if optimizer not in ("adam", "sgd"):
            raise ConfigError(f"model.optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        if lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"model.lr_schedule must be one of {sorted(LR_SCHEDULES)}, got {lr_schedule!r}")
        number("model.lr", lr, low=0, low_open=True)
        number("model.momentum", momentum, low=0, high=1, high_open=True)
        number("model.time_steps", time_steps, low=2, integer=True, none_ok=True)
        self.save_hyperparameters(ignore=["network", "loss"])
        self.network = network
        self.loss = loss if loss is not None else SpikeCountLoss()
        net_in = getattr(network, "num_inputs", None)
        net_out = getattr(network, "num_classes", None)
        if num_inputs is not None and net_in is not None and net_in != num_inputs:
            raise ConfigError(
                f"model/data mismatch: the network takes {net_in} inputs but the datamodule provides "
                f"{num_inputs}; fix model.network.init_args.spec"
            )
        if num_classes is not None and net_out is not None and net_out != num_classes:
            raise ConfigError(
                f"model/data mismatch: the network has {net_out} outputs but the datamodule has "
                f"{num_classes} classes; fix model.network.init_args.spec"
            )
        if time_steps is not None:
            check_counts_fit(self.loss, network, int(time_steps))
        self.num_inputs = num_inputs or net_in
        self.num_classes = num_classes or net_out
        self.time_steps = time_steps
        self.optimizer_name = optimizer
        self.lr = lr
        self.momentum = momentum
        self.lr_schedule = lr_schedule
        for stage in ("train", "val", "test"):
            # train: step values reduced over ranks (exact under DDP); states saved in checkpoints so
            # a run resumed mid-epoch reports the same epoch metrics as an uninterrupted one
            kw = {"dist_sync_on_step": True} if stage == "train" else {}
            setattr(self, f"{stage}_acc", MulticlassAccuracy(num_classes=self.num_classes, average="micro", **kw))
            setattr(self, f"{stage}_loss", MeanMetric(**kw))
            setattr(self, f"{stage}_silent", MeanMetric(**kw))
        for metric in (self.train_acc, self.train_loss, self.train_silent):
            metric.persistent(True)
        self._metrics_epoch = -1  # the epoch the training-metric states belong to (saved in checkpoints)
        self._lr_epoch = -1  # the epoch train/lr was last logged for

    # ------------------------------------------------------------------ shared step
    def forward(self, spikes: Tensor) -> Tensor:
        """Output spike counts ``[B, classes]`` for input spikes ``[T, B, *in]``."""
        return self.network(spikes).sum(0)

    def model_step(self, batch, stage: str) -> dict:
        spikes, target = batch
        if self.time_steps is not None and spikes.shape[0] != self.time_steps:
            raise ConfigError(
                f"batch has T={spikes.shape[0]} time steps but the model was linked to T={self.time_steps}"
            )
        layers = self.network(spikes, target=target if stage == "train" else None, return_all=True)
        out = layers[next(reversed(layers))]
        counts = out.sum(0)  # [B, classes]
        loss = self.loss(counts, target)
        if not torch.isfinite(loss):
            bad = first_nonfinite(self.named_parameters())
            where = f"non-finite parameter {bad!r}" if bad else "the loss inputs (all parameters are finite)"
            raise TrainingDivergedError(f"{stage} loss is {loss.item()} at global step {self.global_step}: check {where}")
        preds = counts.detach().argmax(-1)  # ties -> lowest index; all-silent -> class 0
        silent = (counts.detach().sum(-1) == 0).float()
        # calling a metric updates its epoch state and returns the batch value (for on_step logs)
        getattr(self, f"{stage}_acc")(preds, target)
        getattr(self, f"{stage}_loss")(loss.detach() / spikes.shape[1], weight=spikes.shape[1])
        getattr(self, f"{stage}_silent")(silent)
        for key in ("acc", "loss", "silent"):
            name = f"{stage}/{'silent_output' if key == 'silent' else key}"
            self.log(name, getattr(self, f"{stage}_{key}"), on_step=stage == "train" and key != "silent",
                     on_epoch=True, prog_bar=key == "acc", batch_size=spikes.shape[1])
        return {
            "loss": loss,
            "preds": preds,
            "target": target,
            "counts": {name: s.detach().sum(0) for name, s in layers.items()},
            "time_steps": spikes.shape[0],
        }

    def training_step(self, batch, batch_idx):
        return self.model_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self.model_step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self.model_step(batch, "test")

    def predict_step(self, batch, batch_idx) -> dict:
        """``{"pred" [B], "counts" [B, classes], "index" [B], "label" [B]}`` for a batch ``(spikes[, labels[, index]])``.

        ``pred`` is the argmax of the output counts (ties and all-silent outputs: lowest index);
        ``index`` is the sample index the datamodule gives (else the position in the batch),
        ``label`` the label (-1 without one). ``hm2bp predict`` writes them to a CSV file
        (``hm2bp.callbacks.PredictionWriter``)."""
        items = list(batch) if isinstance(batch, (tuple, list)) else [batch]
        spikes = items[0]
        counts = self(spikes)
        n = counts.shape[0]
        label = items[1] if len(items) > 1 else torch.full((n,), -1, dtype=torch.long, device=counts.device)
        index = items[2] if len(items) > 2 else torch.arange(n, device=counts.device)
        return {"pred": counts.argmax(-1), "counts": counts, "index": index, "label": label}

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        if self.optimizer_name == "adam":
            opt = torch.optim.Adam(params, lr=self.lr, betas=(0.9, 0.999), eps=1e-8)
        else:
            opt = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)
        if self.lr_schedule == "constant":
            return opt
        sched = torch.optim.lr_scheduler.LambdaLR(opt, LR_SCHEDULES[self.lr_schedule])
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    # ------------------------------------------------------------------ checks before training
    def setup(self, stage: str) -> None:
        """Check model/data agreement and the batch split before any training work (one clear error)."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None:
            self.check_data(dm)

    def check_data(self, dm) -> None:
        """One :class:`~hm2bp.errors.ConfigError` if the datamodule's T, input size, class count or
        batch split does not fit this model (the CLI calls it before anything is written)."""
        data_t = getattr(dm, "time_steps", None)
        if self.time_steps is not None and data_t is not None and int(data_t) != int(self.time_steps):
            raise ConfigError(
                f"T mismatch: the datamodule produces T={data_t} time steps but the model was built for "
                f"T={self.time_steps}; link them (the CLI does) or set both to the same value"
            )
        net_in = getattr(self.network, "num_inputs", None)
        data_in = getattr(dm, "num_inputs", None)
        if net_in is not None and data_in is not None and int(net_in) != int(data_in):
            raise ConfigError(
                f"model/data mismatch: the network takes {net_in} inputs but the datamodule provides "
                f"{data_in}; fix model.network.init_args.spec"
            )
        net_out = getattr(self.network, "num_classes", None)
        data_out = getattr(dm, "num_classes", None)
        if net_out is not None and data_out is not None and int(net_out) != int(data_out):
            raise ConfigError(
                f"model/data mismatch: the network has {net_out} outputs but the datamodule has "
                f"{data_out} classes; fix model.network.init_args.spec"
            )
        if data_t is not None and self.time_steps is None:
            check_counts_fit(self.loss, self.network, int(data_t))
        if hasattr(dm, "per_device_batch_size"):
            dm.per_device_batch_size  # noqa: B018  (raises when the global batch does not split evenly)

    # ------------------------------------------------------------------ resume and numerics
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[_METRICS_EPOCH] = self._metrics_epoch

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore which epoch the saved training-metric states belong to; accept checkpoints
        written before those states were saved in them."""
        self._metrics_epoch = int(checkpoint.get(_METRICS_EPOCH, checkpoint.get("epoch", -1)))
        state = checkpoint.get("state_dict")
        if state is None:
            return
        for key, value in self.state_dict().items():
            if key.startswith(("train_acc.", "train_loss.", "train_silent.")) and key not in state:
                state[key] = value

    def on_train_batch_start(self, batch, batch_idx) -> None:
        """At the first batch of an epoch: fresh training metrics, and ``train/lr``.

        Keyed by the epoch the metric states belong to (saved in checkpoints), not by
        ``on_train_epoch_start``: Lightning skips that hook for the epoch after a checkpoint written
        at an epoch's end, and a mid-epoch resume must keep its restored states.
        """
        epoch = int(self.current_epoch)
        if self._metrics_epoch != epoch:
            for metric in (self.train_acc, self.train_loss, self.train_silent):
                metric.reset()
            self._metrics_epoch = epoch
        if self._lr_epoch != epoch and self._trainer is not None and self.trainer.optimizers:
            # the learning rate of this epoch (replaces a LearningRateMonitor, which needs a logger)
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=False, on_epoch=True,
                     batch_size=1)
            self._lr_epoch = epoch

    def on_before_optimizer_step(self, optimizer) -> None:
        bad = first_nonfinite((n, p.grad) for n, p in self.named_parameters() if p.grad is not None)
        if bad is not None:
            raise TrainingDivergedError(
                f"non-finite HM2-BP gradient in parameter {bad!r} at global step {self.global_step}; "
                "lower the learning rate"
            )
        world = self.trainer.world_size if self._trainer is not None else 1
        if world > 1 and isinstance(self.trainer.strategy, DDPStrategy):
            # DDP averaged the per-rank sums; restore the single-process sum over the global batch
            for p in self.parameters():
                if p.grad is not None:
                    p.grad.mul_(world)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        """Stop at the first optimizer step that leaves a non-finite weight, naming the parameter."""
        bad = first_nonfinite(self.named_parameters())
        if bad is not None:
            raise TrainingDivergedError(
                f"non-finite weights in {bad!r} after optimizer step {self.global_step}; "
                "lower the learning rate or check the data"
            )


_METRICS_EPOCH = "hm2bp_train_metrics_epoch"  # checkpoint key


def check_counts_fit(loss: nn.Module, network: nn.Module, time_steps: int) -> None:
    """The loss's desired/undesired counts and the network's target injection must be reachable in
    ``time_steps`` steps by the output layer (:func:`hm2bp.checks.max_spike_count`); one
    :class:`ConfigError` naming the key otherwise."""
    layers = getattr(network, "layers", None)
    output = layers["output"] if layers is not None and "output" in layers else None
    refractory = getattr(output, "refractory", None)
    if refractory is None:
        return
    limit = max_spike_count(time_steps, refractory)
    fix = "scale the counts with T (35/5/5 are for T=400) or raise data.init_args.time_steps"
    checks = [("model.loss.init_args.desired", getattr(loss, "desired", None)),
              ("model.loss.init_args.undesired", getattr(loss, "undesired", None))]
    rule = getattr(output, "rule", None)
    checks.append(("model.network.init_args.target_injection", getattr(rule, "target_injection", None)))
    for key, value in checks:
        if value is not None and float(value) > limit:
            raise ConfigError(
                f"{key}={value:g} is unreachable at T={time_steps}: an output neuron with refractory period "
                f"{refractory} fires at most {limit} times; {fix}"
            )


def first_nonfinite(named_tensors) -> str | None:
    """Name of the first tensor holding a NaN or Inf, else ``None`` (one host sync when all are finite)."""
    named = [(n, t) for n, t in named_tensors if t is not None]
    if not named:
        return None
    ok = torch.stack([torch.isfinite(t.detach()).all() for _, t in named])
    if bool(ok.all()):
        return None
    return named[int((~ok).nonzero()[0])][0]
