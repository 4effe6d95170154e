r"""``SpikingClassifier``: the LightningModule that trains a spiking network with HM2-BP.

The network (any ``nn.Module`` mapping spikes ``[T, B, *in]`` to output spikes
``[T, B, classes]``) and the loss are injected. Output counts ``o = spikes.sum(0)`` feed the
loss; ``loss.backward()`` runs each layer's HM2-BP rule (no graph through time).

What each object returns, for input spikes ``x`` ``[T, B, *in]``: ``model.network(x)`` gives the
output spike trains ``[T, B, classes]``; ``model(x)`` (this module) gives their counts
``[B, classes]`` (the trains summed over time), whose argmax is the prediction.

Checkpoints load themselves: the network's and the loss's settings are hyper-parameters
(``{class_path, init_args}``, :mod:`hm2bp.settings`), so ``SpikingClassifier.load_from_checkpoint(path)``
rebuilds the trained model; :func:`hm2bp.load` also takes a run folder. The optimizer, the schedule
and boosting are not stored (a loaded model has the defaults; they only matter for training, and
``hm2bp fit --ckpt_path`` resumes from the run's config). A checkpoint written before the settings
were stored loads with the network given: ``load_from_checkpoint(path, network=..., loss=...)``.
The command line does not read these two settings: with ``--ckpt_path`` the config and the flags
keep the network and the loss (:mod:`hm2bp.cli_private`), and a network that does not fit the
checkpoint's weights is refused with one error.

Prediction is the argmax of the output counts. Ties go to the lowest class index, so an
all-silent output predicts class 0, as the official program does (docs/algorithm.md, "Training loop
of the authors' program"); the fraction of
all-silent samples is logged as ``<stage>/silent_output`` so such "correct by default" answers
are visible.

Multi-device semantics (docs/scaling.md): ``data.batch_size`` is the global batch, and the loss is
summed over samples, so one process computes :math:`g = \sum_{b \in \text{global batch}} g_b`. DDP
averages the ranks' gradients, giving :math:`g / W`; ``on_before_optimizer_step`` multiplies by the
world size :math:`W` once per optimizer step (after accumulation and the all-reduce), so every
update equals the single-process update with the same global batch, up to float summation order
(also for the weight regulariser of docs/algorithm.md, "Weight update", which each rank adds once
per local sample). Training metrics sync on every step and their states travel in checkpoints
(exact mid-epoch resume).

Optimizer and schedule are LightningCLI callables (``OptimizerCallable``, ``LRSchedulerCallable``):
any ``torch.optim`` optimizer and scheduler can be configured, e.g.
``optimizer: {class_path: torch.optim.Adam, init_args: {lr: 0.005}}`` and
``lr_scheduler: {class_path: hm2bp.schedules.InvSqrtEpoch}`` (the schedules of the authors' runs are
in :mod:`hm2bp.schedules`); the scheduler steps once per epoch.

Metrics: one ``torchmetrics.MetricCollection`` per stage (``train_metrics``, ``val_metrics``,
``test_metrics``; :meth:`SpikingClassifier.stage_metrics`) with members ``acc``, ``loss`` and
``silent_output``, logged as ``<stage>/<member>`` (``train/acc``, ``val/loss``, ...).
"""
from __future__ import annotations

from collections.abc import Mapping

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.strategies import DDPStrategy
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from hm2bp.boosting import SampleBoosting
from hm2bp.checks import max_spike_count, number
from hm2bp.errors import ConfigError, TrainingDivergedError
from hm2bp.loss import SpikeCountLoss
from hm2bp.schedules import InvSqrtEpoch
from hm2bp.settings import build_module, module_settings

DEFAULT_LR = 5e-3  # Adam on batch-summed gradients at batch 32-64 (official batch-1 Adam: 1e-3)
STAGES = ("train", "val", "test")
METRICS = ("acc", "loss", "silent_output")  # logged as <stage>/<name>



def check_network_fits(network: nn.Module, num_inputs: int | None, num_classes: int | None) -> None:
    """One :class:`~hm2bp.errors.ConfigError` if ``network``'s input size or class count differs from
    the data's (either side ``None``: nothing to check)."""
    sizes = (("num_inputs", num_inputs, "takes {net} inputs but the datamodule provides {data}"),
             ("num_classes", num_classes, "has {net} outputs but the datamodule has {data} classes"))
    for attr, data, text in sizes:
        net = getattr(network, attr, None)
        if net is not None and data is not None and int(net) != int(data):
            raise ConfigError(f"model/data mismatch: the network {text.format(net=net, data=data)}; "
                              "fix model.network.init_args.spec")

class SpikingClassifier(pl.LightningModule):
    """Classification with spike-count outputs: ``model(x)`` maps input spikes ``[T, B, *in]`` to output
    spike counts ``[B, classes]``; ``model.network(x)`` gives the trains ``[T, B, classes]``.

    Args:
        network: the spiking network (e.g. ``hm2bp.SpikingNetwork``), or its settings
            ``{"class_path": ..., "init_args": {...}}`` (what checkpoints store; :mod:`hm2bp.settings`).
        loss: count loss (default ``SpikeCountLoss(35, 5, 5)``), or its settings.
        optimizer: a callable ``params -> torch.optim.Optimizer`` (LightningCLI's ``OptimizerCallable``;
            in a config ``{class_path: torch.optim.Adam, init_args: {lr: 0.005}}``). Default: Adam
            (β 0.9/0.999, ε 1e-8, as the authors' program) at lr 5e-3 for the batch-summed gradient.
        lr_scheduler: a callable ``optimizer -> scheduler`` stepped once per epoch
            (``LRSchedulerCallable``); :mod:`hm2bp.schedules` holds the authors' schedules
            (``OfficialMLP``: lr for two epochs, then lr/√e; ``InvSqrtEpoch``: lr/√(e+1), the default).
            ``None``: a constant rate.
        num_inputs, num_classes, time_steps: linked from the datamodule by the CLI; when given they
            are checked against the network and every batch, with one clear error.
        boosting: the authors' per-sample error weights (:class:`hm2bp.boosting.SampleBoosting`;
            in a config ``boosting: {class_path: hm2bp.SampleBoosting}``), or ``None`` (default: off).
            Needs training batches ``(spikes, labels, index)``, which every hm2bp datamodule gives.
    """

    def __init__(
        self,
        network: nn.Module,
        loss: nn.Module | None = None,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = InvSqrtEpoch,
        num_inputs: int | None = None,
        num_classes: int | None = None,
        time_steps: int | None = None,
        boosting: SampleBoosting | None = None,
    ) -> None:
        super().__init__()
        if optimizer is not None and not callable(optimizer):
            raise ConfigError(f"model.optimizer must be an optimizer class or callable (e.g. torch.optim.Adam), "
                              f"got {optimizer!r}")
        if lr_scheduler is not None and not callable(lr_scheduler):
            raise ConfigError(f"model.lr_scheduler must be a scheduler class or callable (e.g. "
                              f"hm2bp.schedules.InvSqrtEpoch) or null, got {lr_scheduler!r}")
        number("model.time_steps", time_steps, low=2, integer=True, none_ok=True)
        if boosting is not None and not isinstance(boosting, SampleBoosting):
            raise ConfigError(f"model.boosting must be an hm2bp.SampleBoosting or null, got {boosting!r}")
        if isinstance(network, Mapping):
            network = build_module(network, "model.network")
        if isinstance(loss, Mapping):
            loss = build_module(loss, "model.loss")
        if not isinstance(network, nn.Module):
            raise ConfigError(f"model.network must be an nn.Module (e.g. hm2bp.SpikingNetwork) or its settings "
                              f"{{class_path, init_args}}, got {network!r}")
        self.boosting = boosting
        self.network = network
        self.loss = loss if loss is not None else SpikeCountLoss()
        self.save_hyperparameters(self.stored_hparams(num_inputs, num_classes, time_steps))
        check_network_fits(network, num_inputs, num_classes)
        if time_steps is not None:
            check_counts_fit(self.loss, network, int(time_steps))
        self.num_inputs = num_inputs or getattr(network, "num_inputs", None)
        self.num_classes = num_classes or getattr(network, "num_classes", None)
        self.time_steps = time_steps
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.train_metrics = self._new_metrics("train")
        self.val_metrics = self._new_metrics("val")
        self.test_metrics = self._new_metrics("test")
        # train: states saved in checkpoints, so a run resumed mid-epoch reports the same epoch metrics
        self.train_metrics.persistent(True)
        self._metrics_epoch = -1  # the epoch the training-metric states belong to (saved in checkpoints)
        self._lr_epoch = -1  # the epoch train/lr was last logged for
        self.epoch_lr: float | None = None  # the learning rate of the current epoch's optimizer steps

    def stored_hparams(self, num_inputs, num_classes, time_steps) -> dict:
        """The hyper-parameters checkpoints hold: the network's and loss's settings (left out when a
        module's constructor arguments cannot be recovered: such a checkpoint needs ``network=`` or
        ``loss=`` to load) and the linked sizes."""
        hparams = {"network": module_settings(self.network), "loss": module_settings(self.loss),
                   "num_inputs": num_inputs, "num_classes": num_classes, "time_steps": time_steps}
        return {k: v for k, v in hparams.items() if v is not None or k not in ("network", "loss")}

    def stage_metrics(self, stage: str) -> MetricCollection:
        """The metrics of ``stage`` (``"train"``, ``"val"`` or ``"test"``)."""
        return {"train": self.train_metrics, "val": self.val_metrics, "test": self.test_metrics}[stage]

    def _new_metrics(self, stage: str) -> MetricCollection:
        """Accuracy, mean per-sample loss and all-silent fraction of one stage."""
        # train: step values reduced over ranks (exact under DDP)
        kw = {"dist_sync_on_step": True} if stage == "train" else {}
        return MetricCollection(
            {"acc": MulticlassAccuracy(num_classes=self.num_classes, average="micro", **kw),
             "loss": MeanMetric(**kw), "silent_output": MeanMetric(**kw)},
            compute_groups=False,  # loss and silent_output are both MeanMetrics: never merge their states
        )

    # ------------------------------------------------------------------ shared step
    def forward(self, spikes: Tensor) -> Tensor:
        """Output spike counts ``[B, classes]`` for input spikes ``[T, B, *in]`` (the network's output
        trains ``[T, B, classes]`` summed over time; ``counts.argmax(-1)`` is the prediction)."""
        return self.network(spikes).sum(0)

    def model_step(self, batch, stage: str) -> dict:
        """``batch`` = ``(spikes, labels[, index])`` (the index names each sample; boosting needs it)."""
        spikes, target, *rest = batch
        index = rest[0] if rest else None
        if self.time_steps is not None and spikes.shape[0] != self.time_steps:
            raise ConfigError(
                f"batch has T={spikes.shape[0]} time steps but the model was linked to T={self.time_steps}"
            )
        layers = self.network(spikes, target=target if stage == "train" else None, return_all=True)
        out = layers[next(reversed(layers))]
        counts = out.sum(0)  # [B, classes]
        boost = self.boosting if stage == "train" else None
        if boost is not None:
            if boost.begin(int(self.current_epoch)) and boost.last_errors:
                self.log("train/boost_max_weight", float(boost.weights.max()), on_step=False, on_epoch=True,
                         batch_size=1)
            loss = self.loss(counts, target, weight=boost.batch_weights(index, counts.dtype))
        else:
            loss = self.loss(counts, target)
        if not torch.isfinite(loss):
            bad = first_nonfinite(self.named_parameters())
            where = f"non-finite parameter {bad!r}" if bad else "the loss inputs (all parameters are finite)"
            raise TrainingDivergedError(f"{stage} loss is {loss.item()} at global step {self.global_step}: check {where}")
        preds = counts.detach().argmax(-1)  # ties -> lowest index; all-silent -> class 0
        if boost is not None:
            boost.record(index, target, preds)
        silent = (counts.detach().sum(-1) == 0).float()
        # calling a metric updates its epoch state and returns the batch value (for on_step logs)
        metrics = self.stage_metrics(stage)
        metrics["acc"](preds, target)
        metrics["loss"](loss.detach() / spikes.shape[1], weight=spikes.shape[1])
        metrics["silent_output"](silent)
        for key in METRICS:
            self.log(f"{stage}/{key}", metrics[key], on_step=stage == "train" and key != "silent_output",
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
    def build_optimizer(self) -> torch.optim.Optimizer:
        """The configured optimizer on the trainable parameters, its learning rates checked."""
        params = [p for p in self.parameters() if p.requires_grad]
        if self.optimizer_factory is None:
            opt = torch.optim.Adam(params, lr=DEFAULT_LR, betas=(0.9, 0.999), eps=1e-8)
        else:
            try:
                opt = self.optimizer_factory(params)
            except (TypeError, ValueError) as err:  # torch's own checks, e.g. "Invalid momentum value: -0.5"
                raise ConfigError(f"model.optimizer: {err}") from err
        if not isinstance(opt, torch.optim.Optimizer):
            raise ConfigError(f"model.optimizer built {type(opt).__name__}, not a torch.optim.Optimizer")
        for group in opt.param_groups:
            number("model.optimizer.init_args.lr", group.get("lr"), low=0, low_open=True)
        return opt

    def configure_optimizers(self):
        opt = self.build_optimizer()
        if self.lr_scheduler_factory is None:
            return opt
        sched = self.lr_scheduler_factory(opt)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    # ------------------------------------------------------------------ checks before training
    def setup(self, stage: str) -> None:
        """Check model/data agreement before any training work (one clear error; the datamodule checks
        its batch split over the devices when it builds its loaders)."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None:
            self.check_data(dm)

    def check_data(self, dm) -> None:
        """One :class:`~hm2bp.errors.ConfigError` if the datamodule's T, input size or class count does
        not fit this model (the CLI calls it before anything is written)."""
        data_t = getattr(dm, "time_steps", None)
        if self.time_steps is not None and data_t is not None and int(data_t) != int(self.time_steps):
            raise ConfigError(
                f"T mismatch: the datamodule produces T={data_t} time steps but the model was built for "
                f"T={self.time_steps}; link them (the CLI does) or set both to the same value"
            )
        check_network_fits(self.network, getattr(dm, "num_inputs", None), getattr(dm, "num_classes", None))
        if data_t is not None and self.time_steps is None:
            check_counts_fit(self.loss, self.network, int(data_t))

    # ------------------------------------------------------------------ resume and numerics
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[_METRICS_EPOCH] = self._metrics_epoch

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore which epoch the saved training-metric states belong to; accept checkpoints
        written before those states were saved in them, and a boosted run's checkpoint in a model
        without boosting (its sample weights only matter for training)."""
        self._metrics_epoch = int(checkpoint.get(_METRICS_EPOCH, checkpoint.get("epoch", -1)))
        state = checkpoint.get("state_dict")
        if state is None:
            return
        for key in [k for k in state if k.startswith(tuple(_OLD_METRIC_NAMES))]:
            # checkpoints written before the per-stage MetricCollections: train_acc.* -> train_metrics.acc.*
            old, rest = key.split(".", 1)
            state[f"{_OLD_METRIC_NAMES[old + '.']}.{rest}"] = state.pop(key)
        for key, value in self.state_dict().items():
            if key.startswith("train_metrics.") and key not in state:
                state[key] = value
        if self.boosting is None:  # a boosted run's checkpoint, tested or resumed without boosting
            for key in [k for k in state if k.startswith("boosting.")]:
                del state[key]

    def on_train_batch_start(self, batch, batch_idx) -> None:
        """At the first batch of an epoch: fresh training metrics, and ``train/lr``.

        Keyed by the epoch the metric states belong to (saved in checkpoints), not by
        ``on_train_epoch_start``: Lightning skips that hook for the epoch after a checkpoint written
        at an epoch's end, and a mid-epoch resume must keep its restored states.
        """
        epoch = int(self.current_epoch)
        if self._metrics_epoch != epoch:
            self.train_metrics.reset()
            self._metrics_epoch = epoch
        if self._lr_epoch != epoch and self._trainer is not None and self.trainer.optimizers:
            # the rate this epoch's optimizer steps use: the scheduler steps only at epoch ends
            # (replaces a LearningRateMonitor, which needs a logger); EpochCurve reads epoch_lr
            self.epoch_lr = float(self.trainer.optimizers[0].param_groups[0]["lr"])
            self.log("train/lr", self.epoch_lr, on_step=False, on_epoch=True, batch_size=1)
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
_OLD_METRIC_NAMES = {f"{stage}_{old}.": f"{stage}_metrics.{new}" for stage in STAGES
                     for old, new in (("acc", "acc"), ("loss", "loss"), ("silent", "silent_output"))}


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
