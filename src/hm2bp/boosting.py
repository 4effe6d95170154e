r"""``SampleBoosting``: the per-sample error weights of the authors' program
(``docs/algorithm.md``, "Boosting").

Every training sample :math:`n` carries a weight :math:`\beta_n`, 1 at the start. The output error
of a sample is scaled by its weight, :math:`g_{nk} \leftarrow \beta_n\, g_{nk}` ("Weight update"),
which the classifier does by weighting the sample's loss. After each training epoch, with
:math:`M` the samples misclassified by that epoch's training forward passes and :math:`S_c` the
samples of class :math:`c` seen in the epoch,

.. math::

    \mathrm{err}_c = \frac{\sum_{n \in M \cap S_c} \beta_n}{\sum_{n \in S_c} \beta_n},\qquad
    \beta_n \leftarrow \beta_n\, e^{\mathrm{err}_c / 20}\quad (n \in M \cap S_c).

So a weight grows by at most :math:`e^{0.05}` per epoch and is exactly 1 during the first epoch.
The update is applied when the next epoch's first training batch arrives (:meth:`begin`), keyed
by the epoch the records belong to. The weights, the records and that epoch are buffers, saved in
checkpoints, so a run resumed from any checkpoint (mid-epoch or at an epoch's end) applies the same
updates. Under DDP the records of all ranks are merged before the update, so every rank holds the
same weights.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist
from torch import Tensor, nn

from hm2bp.checks import number
from hm2bp.errors import ConfigError


class SampleBoosting(nn.Module):
    """Per-sample weights :math:`\\beta_n`, indexed by the datamodule's sample index.

    Args:
        rate: exponent factor of the update, :math:`\\beta \\leftarrow \\beta\\,e^{\\mathrm{rate}\\cdot
            \\mathrm{err}_c}` (the authors' program: 1/20).

    The tables grow to the largest sample index seen (so no dataset size is needed up front).
    """

    def __init__(self, rate: float = 0.05) -> None:
        super().__init__()
        number("model.boosting.init_args.rate", rate, low=0)
        self.rate = float(rate)
        self.register_buffer("weights", torch.ones(0, dtype=torch.float64))  # beta_n
        # the current epoch's records: seen, misclassified, label (-1: not seen)
        self.register_buffer("wrong", torch.zeros(0, dtype=torch.bool))
        self.register_buffer("label", torch.full((0,), -1, dtype=torch.long))
        self.register_buffer("records_epoch", torch.tensor(-1, dtype=torch.long))  # -1: no records held
        self.last_errors: dict[str, float] = {}  # err_c of the last update

    def begin(self, epoch: int) -> bool:
        """Before a training batch of ``epoch``: if the records held belong to an earlier epoch,
        apply their update (:meth:`update`) first. Returns whether an update was applied."""
        held = int(self.records_epoch)
        if held == epoch:
            return False
        updated = False
        if held >= 0:
            self.last_errors = self.update()
            updated = True
        self.records_epoch.fill_(epoch)
        return updated

    def _grow(self, size: int) -> None:
        n = self.weights.numel()
        if size <= n:
            return
        dev = self.weights.device
        self.weights = torch.cat([self.weights, torch.ones(size - n, dtype=torch.float64, device=dev)])
        self.wrong = torch.cat([self.wrong, torch.zeros(size - n, dtype=torch.bool, device=dev)])
        self.label = torch.cat([self.label, torch.full((size - n,), -1, dtype=torch.long, device=dev)])

    @staticmethod
    def _check_index(index: Tensor | None) -> Tensor:
        if index is None:
            raise ConfigError(
                "model.boosting needs each training batch's sample index: the datamodule must hand the model "
                "(spikes, labels, index) batches (every hm2bp datamodule does); turn model.boosting off otherwise"
            )
        return index.long()

    def batch_weights(self, index: Tensor | None, dtype: torch.dtype = torch.float32) -> Tensor:
        """:math:`\\beta_n` of a batch's samples ``[B]`` (1 for samples not seen before)."""
        index = self._check_index(index)
        self._grow(int(index.max()) + 1 if index.numel() else 0)
        return self.weights[index.to(self.weights.device)].to(dtype)

    def record(self, index: Tensor | None, target: Tensor, preds: Tensor) -> None:
        """Note which samples of a training batch the forward pass misclassified."""
        index = self._check_index(index).to(self.weights.device)
        self._grow(int(index.max()) + 1 if index.numel() else 0)
        self.label[index] = target.to(self.label.device)
        self.wrong[index] = (preds != target).to(self.wrong.device)

    def update(self) -> dict[str, float]:
        """End of a training epoch: merge the ranks' records, grow the misclassified samples'
        weights by their class's weighted error, and clear the records. Returns ``err_c`` per class."""
        label, wrong = self.label, self.wrong
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            size = torch.tensor([label.numel()], device=label.device)
            dist.all_reduce(size, op=dist.ReduceOp.MAX)
            self._grow(int(size))
            label = self.label.clone()
            dist.all_reduce(label, op=dist.ReduceOp.MAX)  # -1 where no rank saw the sample
            wrong = self.wrong.to(torch.int32)
            dist.all_reduce(wrong, op=dist.ReduceOp.MAX)
            wrong = wrong.bool()
        errors: dict[str, float] = {}
        seen = label >= 0
        for c in torch.unique(label[seen]).tolist():
            members = seen & (label == c)
            miss = members & wrong
            err = float(self.weights[miss].sum() / self.weights[members].sum())
            self.weights[miss] *= math.exp(self.rate * err)
            errors[str(c)] = err
        self.label.fill_(-1)
        self.wrong.fill_(False)
        return errors

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """Accept saved tables of any length (they grow with the sample indices seen), and a
        checkpoint saved without boosting (boosting turned on when resuming: all weights start at 1)."""
        key = prefix + "weights"
        if not any(k.startswith(prefix) for k in state_dict):
            return
        if key in state_dict:
            n = state_dict[key].numel()
            dev = self.weights.device
            self.weights = torch.ones(n, dtype=torch.float64, device=dev)
            self.wrong = torch.zeros(n, dtype=torch.bool, device=dev)
            self.label = torch.full((n,), -1, dtype=torch.long, device=dev)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def extra_repr(self) -> str:
        return f"rate={self.rate}, samples={self.weights.numel()}"
