"""The learning-rate schedules (:mod:`hm2bp.schedules`), checked against the authors' logged per-epoch rates."""
from __future__ import annotations

import csv
import math
from functools import partial

import pytest
import torch

from hm2bp import SpikingClassifier, SpikingNetwork
from hm2bp.schedules import SCHEDULES, Constant, InvSqrtEpoch, OfficialMLP


def _model(schedule, lr: float = 1e-3) -> SpikingClassifier:
    return SpikingClassifier(SpikingNetwork("4-3-2", thresholds=[1.0, 1.0]),
                             optimizer=partial(torch.optim.Adam, lr=lr), lr_scheduler=schedule)


def _lrs(schedule, epochs: int, lr: float = 1e-3) -> list[float]:
    """The rate of each epoch's optimizer steps, stepping the scheduler once per epoch as Lightning does."""
    cfg = _model(schedule, lr).configure_optimizers()
    if isinstance(cfg, torch.optim.Optimizer):
        return [lr] * epochs
    assert cfg["lr_scheduler"]["interval"] == "epoch"
    opt, sched = cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("experiment, schedule", [("mnist_mlp", OfficialMLP), ("nmnist_mlp", OfficialMLP),
                                                   ("mnist_cnn", InvSqrtEpoch)])
def test_schedules_match_the_authors_logs(shared_data, experiment, schedule):
    """The MLP logs keep lr for two epochs; the CNN log decays from the second epoch on."""
    rows = [r for r in csv.DictReader(open(shared_data / "official-curves.csv")) if r["experiment"] == experiment]
    logged = [float(r["lr"]) for r in sorted(rows, key=lambda r: int(r["epoch"]))][:30]
    assert _lrs(schedule, len(logged)) == pytest.approx(logged, abs=5e-9)  # the logs print 8 decimals
    other = InvSqrtEpoch if schedule is OfficialMLP else OfficialMLP
    assert _lrs(other, len(logged)) != pytest.approx(logged, abs=5e-9)


def test_schedules_differ_from_epoch_two():
    official, inv_sqrt = _lrs(OfficialMLP, 4), _lrs(InvSqrtEpoch, 4)
    assert official == pytest.approx([1e-3, 1e-3, 1e-3 / math.sqrt(2), 1e-3 / math.sqrt(3)])
    assert inv_sqrt == pytest.approx([1e-3, 1e-3 / math.sqrt(2), 1e-3 / math.sqrt(3), 1e-3 / 2])
    assert _lrs(Constant, 3) == [1e-3] * 3
    assert _lrs(None, 3) == [1e-3] * 3  # lr_scheduler null: no scheduler
    assert set(SCHEDULES) == {"official", "inv_sqrt_epoch", "constant"}


def test_schedules_equal_the_lambda_schedules_they_replace():
    """Bit for bit the rates of the LambdaLR factors used before (same numbers for old configs)."""
    old = {"official": lambda e: 1.0 / math.sqrt(max(e, 1)), "inv_sqrt_epoch": lambda e: 1.0 / math.sqrt(e + 1)}
    for name, factor in old.items():
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=5e-3)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        expected = []
        for _ in range(12):
            expected.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert _lrs(SCHEDULES[name], 12, lr=5e-3) == expected


def test_scheduler_resumes_from_its_state_and_from_an_old_lambda_state():
    """A scheduler restored from a checkpoint's state (ours, or the LambdaLR of older checkpoints)
    continues with the rates of an uninterrupted run."""
    def run(sched_cls, state=None, epochs=3):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
        sched = sched_cls(opt)
        if state is not None:
            sched.load_state_dict(state)
            opt.param_groups[0]["lr"] = sched.get_last_lr()[0]  # Lightning restores the optimizer's lr too
        out = []
        for _ in range(epochs):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out, sched.state_dict()

    full, _ = run(OfficialMLP, epochs=6)
    _, state = run(OfficialMLP, epochs=3)
    assert run(OfficialMLP, state)[0] == full[3:]
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
    lam = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0 / math.sqrt(max(e, 1)))
    for _ in range(3):
        opt.step()
        lam.step()
    assert run(OfficialMLP, lam.state_dict())[0] == full[3:]


def test_bad_optimizer_and_schedule_are_config_errors():
    from hm2bp.errors import ConfigError

    with pytest.raises(ConfigError, match="model.lr_scheduler"):
        SpikingClassifier(SpikingNetwork("4-3-2", thresholds=[1.0, 1.0]), lr_scheduler="cosine")
    with pytest.raises(ConfigError, match="model.optimizer"):
        SpikingClassifier(SpikingNetwork("4-3-2", thresholds=[1.0, 1.0]), optimizer="adam")
    model = SpikingClassifier(SpikingNetwork("4-3-2", thresholds=[1.0, 1.0]), optimizer=partial(torch.optim.SGD, lr=0.0))
    with pytest.raises(ConfigError, match=r"model\.optimizer\.init_args\.lr=0\.0 must be > 0"):
        model.configure_optimizers()


def test_default_optimizer_is_adam_at_5e_3():
    opt = _model(InvSqrtEpoch).__class__(SpikingNetwork("4-3-2", thresholds=[1.0, 1.0])).build_optimizer()
    assert isinstance(opt, torch.optim.Adam)
    assert opt.defaults["lr"] == 5e-3 and opt.defaults["betas"] == (0.9, 0.999) and opt.defaults["eps"] == 1e-8
