"""``hm2bp`` command line: LightningCLI with OmegaConf interpolation (``parser_mode="omegaconf+"``).

    hm2bp fit --config configs/experiment/digits.yaml
    hm2bp fit --config configs/experiment/digits.yaml --ckpt_path last      # resume the latest run
    hm2bp test --config configs/experiment/digits.yaml --ckpt_path best     # its best checkpoint
    hm2bp predict --config configs/experiment/digits.yaml --ckpt_path best  # -> predictions.csv
    hm2bp export --config configs/experiment/digits.yaml --ckpt_path <run>/checkpoints/last.ckpt --out model.nir

Values that must agree between data and model (input size, class count, T) are linked from
the instantiated datamodule into ``SpikingClassifier`` (``num_inputs``, ``num_classes``,
``time_steps``), which checks them against the network with one clear error. A ``SpikingNetwork``
whose ``target_injection`` is left null injects the loss's desired count
(``model.loss.init_args.desired``; docs/algorithm.md, "Weight update"); a number sets it explicitly.
Experiment files compose the files of ``configs/model``, ``configs/data`` and ``configs/trainer``
with dotted deltas (:mod:`hm2bp.cli_config`).
``--test_after_fit true`` tests the best checkpoint once ``fit`` ends, in the same run and W&B run
(the last checkpoint when the datamodule holds out no validation set, ``val_size: 0``).

Run folders (:mod:`hm2bp.runs`): every ``fit`` writes its checkpoints, ``config.yaml`` and logs into
a new folder ``<trainer.default_root_dir>/<date>-<time>-<hex>``; ``--ckpt_path last`` resumes the
experiment's latest run in its own folder (and says which; :mod:`hm2bp.ckpt_path`);
``validate``/``test``/``predict`` of a run's checkpoint write into ``<run>/<command>-<date>-<time>-<hex>``.
A ``ModelCheckpoint`` with an explicit ``dirpath`` keeps it, but may not write over another run's
checkpoints there.

Checks made before any process is launched or anything is written (:mod:`hm2bp.cli_checks`,
docs/troubleshooting.md): the optimizer and its learning rate, every
configured value, the ``--ckpt_path`` file (readable, and made for this network), the global
``data.init_args.batch_size`` against ``devices x num_nodes``, every data split the command will use
(train and validation, and test when ``test_after_fit``), and the output folder. Errors the user
can fix print as one line and exit with status 2 (:mod:`hm2bp.cli_errors`); a fit that fails before
its first step leaves no run folder and no W&B run. Ctrl-C during ``fit`` saves ``last.ckpt`` first
(``hm2bp.callbacks.CheckpointOnInterrupt``). Checkpoints are written atomically
(``hm2bp.checkpoint.AtomicCheckpointIO``).

Help (:mod:`hm2bp.cli_help`): ``hm2bp --help`` lists every verb and option; ``hm2bp <verb> --help``
the options people change, on one screen; ``hm2bp <verb> --help full`` LightningCLI's complete list.
``test``/``validate`` (and ``fit`` with ``--test_after_fit``) print their score with the number of
samples scored (:mod:`hm2bp.cli_report`).

This module is the console entry point only: the LightningCLI subclass and :func:`cli_main` live in
:mod:`hm2bp.cli_app` (re-exported here, loaded when first used, so that help needs no Lightning), the
``export`` verb in :mod:`hm2bp.nir.command`.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from hm2bp.cli_errors import EXIT_USAGE, debug_requested, is_known, one_line
from hm2bp.cli_help import LIGHTNING_VERBS, VERBS, help_request, main_help, verb_help, verb_of

if TYPE_CHECKING:
    from hm2bp.cli_app import HM2BPCLI, cli_main

__all__ = ["HM2BPCLI", "cli_main", "main"]


def __getattr__(name: str):
    if name in ("HM2BPCLI", "cli_main"):  # Lightning loads only when the CLI itself is used
        from hm2bp import cli_app

        return getattr(cli_app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _verb(argv: list[str]) -> int:
    """The index of the verb in ``argv``; one error when there is none or it is unknown."""
    from hm2bp.errors import ConfigError

    found = verb_of(argv)
    choices = ", ".join(VERBS)
    if found is None:
        raise ConfigError(f"give a verb: {choices} (hm2bp --help lists them and their options)")
    k, verb = found
    if verb not in VERBS:
        raise ConfigError(f"unknown verb {verb!r}: choose {choices} (hm2bp --help)")
    return k


def _require_config(verb: str, args: list[str]) -> None:
    """A verb run without ``--config`` (nor a ``--model``/``--data`` file): one error that says what to give."""
    from hm2bp.errors import ConfigError

    if not any(a in ("-c", "--config") or a.startswith(("--config=", "--model", "--data")) for a in args):
        raise ConfigError(f"{verb} needs --config FILE, e.g. hm2bp {verb} --config configs/experiment/digits.yaml "
                          f"(hm2bp {verb} --help)")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``hm2bp`` console script: help pages, the verbs, and known errors as one
    line (exit status 2)."""
    debug, argv = debug_requested(list(sys.argv[1:] if argv is None else argv))
    try:
        kind, argv = help_request(argv) or (None, argv)  # `--help full` leaves LightningCLI's own --help
        if kind == "main":
            sys.stdout.write(main_help())
            return
        k = _verb(argv)
        if kind == "verb":
            sys.stdout.write(verb_help(argv[k]))
            return
        if argv[k] == "export":  # NIR export verb
            from hm2bp.nir.command import export_command

            export_command(argv[:k] + argv[k + 1:])
            return
        assert argv[k] in LIGHTNING_VERBS
        if kind != "full":
            _require_config(argv[k], argv[:k] + argv[k + 1:])
        from hm2bp.cli_app import cli_main

        cli_main(argv)
    except Exception as err:  # noqa: BLE001
        if debug or not is_known(err):
            raise
        sys.stderr.write(f"hm2bp: error: {one_line(err)}\n")
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":  # pragma: no cover
    main()
