"""Composed experiment configs: each resolves to the values it had before composition.

``tests/cli/resolved_before/<name>.yaml`` is the ``hm2bp fit --config configs/experiment/<name>.yaml
--print_config`` output of every experiment as it stood before the configs were composed from
``configs/model``, ``configs/data`` and ``configs/trainer``, and of ``mnist_mlp`` with the
authors' recipe. The composed files must give the same model, data and trainer values; the only
changes are the new spelling of the optimizer and schedule (``model.optimizer`` /
``model.lr_scheduler`` classes instead of ``optimizer: adam``, ``lr``, ``lr_schedule``), the network's
new ``psp`` argument (the new name of ``spsp``, which the model configs now use), the target
injection and W&B run name, which the CLI now derives (from the loss and from
``trainer.default_root_dir``), the top-level ``optimizer``/``lr_scheduler`` options, which are gone, and
the model's later ``boosting`` option: off everywhere but in the authors' recipe. Later changes too:
the network's ``scan_backend`` run-time option ("auto"), the MNIST MLP default without the
regulariser (``reg_lambda`` 0; the authors' recipe keeps 10), the spike callbacks' ``save_png``, the
digits callbacks' ``EpochCurve``, ``digits_nir``'s checkpoints in each run's own folder (no ``dirpath``)
and the spike-list datamodules' ``augment`` (null: off).
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from hm2bp.cli import cli_main
from hm2bp.cli_config import expand_composed_configs
from hm2bp.layers.neurons import psp_option
from hm2bp.run_record import redirect_loggers
from hm2bp.schedules import SCHEDULES

REPO = Path(__file__).resolve().parents[2]
BEFORE = REPO / "tests" / "cli" / "resolved_before"
EXPERIMENTS = sorted((REPO / "configs" / "experiment").glob("*.yaml"))
CASES = {p.stem: [str(p)] for p in EXPERIMENTS}
CASES["mnist_mlp+authors"] = [str(REPO / "configs/experiment/mnist_mlp.yaml"), str(REPO / "configs/recipe/authors_mlp.yaml")]
OPTIMIZERS = {"adam": "torch.optim.Adam", "sgd": "torch.optim.SGD"}


def _resolved(configs: list[str]) -> tuple[dict, object]:
    args = [a for c in configs for a in ("--config", c)]
    cli = cli_main(args, run=False)
    return yaml.safe_load(cli.parser.dump(cli.config, skip_unset=False)), cli


def test_every_experiment_has_its_snapshot():
    assert {p.stem for p in EXPERIMENTS} <= {p.stem for p in BEFORE.glob("*.yaml")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_composed_experiment_resolves_to_the_values_of_before(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = yaml.safe_load((BEFORE / f"{name}.yaml").read_text())
    after, cli = _resolved(CASES[name])
    for key in ("seed_everything", "test_after_fit"):
        assert after[key] == before[key], key
    new_data = copy.deepcopy(after["data"])
    if name == "mnist_mlp":  # hm2bp's MNIST recipe redraws and augments the training trains (docs/results.md)
        args = new_data["init_args"]
        assert (args.pop("redraw_every_epoch"), args.pop("augment")) == (True, True)
        assert before["data"]["init_args"].pop("redraw_every_epoch") is False
        assert before["data"]["init_args"].pop("augment", False) is False
    if "augment" in new_data["init_args"] and "augment" not in before["data"]["init_args"]:
        assert new_data["init_args"].pop("augment") is None  # the spike-list datamodules' later option: off
    assert new_data == before["data"]

    # model: the same values, with the optimizer and schedule spelled as classes
    old_model, new_model = copy.deepcopy(before["model"]), copy.deepcopy(after["model"])
    opt, sched = new_model.pop("optimizer"), new_model.pop("lr_scheduler")
    assert opt["class_path"] == OPTIMIZERS[old_model.pop("optimizer")]
    assert opt["init_args"]["lr"] == old_model.pop("lr")
    if opt["class_path"] == "torch.optim.Adam":
        assert opt["init_args"]["betas"] == [0.9, 0.999] and opt["init_args"]["eps"] == 1e-8
        assert opt["init_args"]["weight_decay"] == 0.0 and not opt["init_args"]["amsgrad"]
        assert old_model.pop("momentum") == 0.0
    boosting = new_model.pop("boosting")
    if name == "mnist_mlp+authors":
        assert boosting["class_path"] == "hm2bp.SampleBoosting" and boosting["init_args"]["rate"] == 0.05
    else:
        assert boosting is None
    schedule = SCHEDULES[old_model.pop("lr_schedule")]
    assert sched["class_path"] == f"{schedule.__module__}.{schedule.__name__}"
    # SpikingNetwork gained `psp`, the new name of `spsp` (both default to None = "exact"): compare
    # the convention they select
    net_args, old_args = new_model["network"].get("init_args", {}), old_model["network"].get("init_args", {})
    if "psp" in net_args and "psp" not in old_args:
        net_args["spsp"] = psp_option("network", net_args.pop("psp"), net_args.get("spsp"))
        old_args["spsp"] = psp_option("network", None, old_args.get("spsp"))
    if "scan_backend" in net_args and "scan_backend" not in old_args:
        assert net_args.pop("scan_backend") == "auto"
    if name in ("mnist_mlp", "ti46_mlp"):  # hm2bp's MNIST and TI46 recipes drop the authors' regulariser (docs/results.md)
        assert (net_args["reg_lambda"], old_args["reg_lambda"]) == (0.0, 10.0)
        net_args["reg_lambda"] = old_args["reg_lambda"]
    assert new_model == old_model

    # trainer: the same values; the W&B run gets the same name once the CLI names it
    old_trainer, new_trainer = copy.deepcopy(before["trainer"]), copy.deepcopy(after["trainer"])
    old_logger, new_logger = old_trainer.pop("logger"), new_trainer.pop("logger")
    # later options: the spike callbacks' save_png (on: PNGs in the run folder); the digits callbacks'
    # EpochCurve (curves.csv in the run folder); digits_nir's checkpoints in the run's own folder
    if len(new_trainer["callbacks"]) == len(old_trainer["callbacks"]) + 1:
        curve = new_trainer["callbacks"].pop()
        assert curve["class_path"] == "hm2bp.callbacks.EpochCurve" and name.startswith("digits"), name
    for old_cb, new_cb in zip(old_trainer["callbacks"], new_trainer["callbacks"]):
        if old_cb["init_args"].get("save_png") is None and "save_png" in new_cb["init_args"]:
            assert new_cb["init_args"].pop("save_png") is True  # was None (automatic), now on by default
            old_cb["init_args"].pop("save_png", None)
        if name == "digits_nir" and old_cb["init_args"].get("dirpath"):
            old_cb["init_args"]["dirpath"] = None
    assert new_trainer == old_trainer
    assert new_logger["class_path"] == old_logger["class_path"]
    moved = ("name", "save_dir")  # save_dir: the CLI writes into the run folder in both cases
    assert {k: v for k, v in new_logger["init_args"].items() if k not in moved} == \
        {k: v for k, v in old_logger["init_args"].items() if k not in moved}
    trainer_cfg = copy.deepcopy(cli.config.trainer)
    redirect_loggers(trainer_cfg, tmp_path / "run", "run")
    assert trainer_cfg.logger.init_args.name == old_logger["init_args"]["name"]

    # and the objects built from it
    net = cli.model.network
    rule = getattr(net.layers["output"], "rule", None) if hasattr(net, "layers") else None
    if rule is not None:
        assert rule.target_injection == cli.model.loss.desired


def test_experiments_reference_the_shared_files_and_hold_only_deltas():
    """Every experiment names its model, data and trainer files; no logger block is repeated."""
    for path in EXPERIMENTS:
        cfg = yaml.safe_load(path.read_text())
        for group in ("model", "data", "trainer"):
            assert isinstance(cfg[group], str) and (path.parent / cfg[group]).is_file(), (path.name, group)
        assert not any(key.startswith("trainer.logger") for key in cfg), path.name
        assert "logger" not in (REPO / "configs" / "trainer" / "ddp.yaml").read_text().split("#")[0]


def test_expand_composed_configs_puts_the_referenced_files_first(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "exp").mkdir()
    (tmp_path / "model" / "m.yaml").write_text("optimizer: {class_path: torch.optim.SGD}\n")
    exp = tmp_path / "exp" / "e.yaml"
    exp.write_text("model: ../model/m.yaml\ndata: ../data/d.yaml\nmodel.time_steps: 30\n")
    plain = tmp_path / "exp" / "plain.yaml"
    plain.write_text("model: ../model/m.yaml\n")
    out = expand_composed_configs(["fit", "--config", str(exp), "--config", str(plain), "--x", "1"])
    assert out == ["fit", "--model", str(tmp_path / "model" / "m.yaml"), "--data", str(tmp_path / "data" / "d.yaml"),
                   "--config", str(exp), "--config", str(plain), "--x", "1"]


def test_a_delta_changes_only_its_key(tmp_path, monkeypatch):
    """digits_nir = the digits model with refractory 0; everything else equal."""
    monkeypatch.chdir(tmp_path)
    digits, _ = _resolved(CASES["digits"])
    nir, _ = _resolved(CASES["digits_nir"])
    assert nir["model"]["network"]["init_args"].pop("refractory") == 0
    assert digits["model"]["network"]["init_args"].pop("refractory") == 2
    assert nir["model"] == digits["model"] and nir["data"] == digits["data"]


def test_target_injection_follows_the_loss_unless_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exp = CASES["ti46_mlp"][0]
    cli = cli_main(["--config", exp, "--model.loss.init_args.desired", "50"], run=False)
    assert cli.model.network.layers["output"].rule.target_injection == 50.0
    cli = cli_main(["--config", exp, "--model.network.init_args.target_injection", "40"], run=False)
    assert cli.model.network.layers["output"].rule.target_injection == 40.0
    assert cli.model.loss.desired == 61.25


def test_data_file_works_alone_and_in_an_experiment(tmp_path, monkeypatch):
    """``--data configs/data/mnist.yaml`` after an experiment swaps in the same class and the file's
    values (the experiment's data deltas are dropped with the rest of its ``data``)."""
    monkeypatch.chdir(tmp_path)
    alone = cli_main(["--config", CASES["mnist_mlp"][0], "--data", str(REPO / "configs/data/mnist.yaml")], run=False)
    inside, _ = _resolved(CASES["mnist_mlp"])
    alone_args, inside_args = alone.config.data.init_args.as_dict(), dict(inside["data"]["init_args"])
    # the experiment's own data deltas sit on top of the file; --data after it takes the file as it is
    assert (inside_args.pop("redraw_every_epoch"), inside_args.pop("augment")) == (True, True)
    assert (alone_args.pop("redraw_every_epoch"), alone_args.pop("augment")) == (False, False)
    assert alone_args == inside_args
