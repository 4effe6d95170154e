"""The one place where the ``hm2bp`` command relies on private Lightning API.

Checked against pytorch_lightning 2.6.6 (:data:`CHECKED_AGAINST`; ``tests/cli/test_private_api.py``
fails when a name below disappears). LightningCLI's public hooks (``add_arguments_to_parser``,
``before_instantiate_classes``, ``instantiate_classes``, ``instantiate_trainer``,
``before_<command>``/``after_<command>``) cover most of what the CLI does; for three things there is
no public hook, so :class:`LightningCLIHooks` overrides the private method that does it and calls a
named hook instead, which :class:`hm2bp.cli_app.HM2BPCLI` implements:

``_parse_ckpt_path`` -> :meth:`~LightningCLIHooks.resolve_ckpt_path`
    ``LightningCLI.__init__`` calls it right after parsing, before any public hook, and there
    ``torch.load``-s the ``--ckpt_path`` file to read the model's hyper-parameters. ``last``/``best``
    must become a file first, and a missing, corrupt or official text checkpoint must give one clear
    error instead of a traceback from ``torch.load``. hm2bp then applies the checkpoint's
    hyper-parameters itself, all but the network's and the loss's settings, so that the user's
    flags for those are never silently replaced (``CONFIG_OWNED_HPARAMS``).
``_set_seed`` -> :meth:`~LightningCLIHooks.check_seed`
    Lightning replaces an out-of-range ``seed_everything`` by 0 with a warning; hm2bp refuses it.
``_run_subcommand`` -> :meth:`~LightningCLIHooks.command_failed` and :meth:`~LightningCLIHooks.command_ended`
    The only frame around ``before_<command>``, the trainer call and ``after_<command>``. A failure
    anywhere in it must finish the W&B run as failed and remove a run folder that holds nothing;
    locks are released whatever happens.

Private names read, not overridden: ``LightningCLI._get`` (a key of the command's config),
``WandbLogger._wandb_init`` (:func:`drop_anonymous_none`), ``WandbLogger._experiment``
(:func:`finish_wandb`) and ``_SubprocessScriptLauncher`` (:func:`relaunches_command_line`).
"""
from __future__ import annotations

from pathlib import Path

import torch
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

CHECKED_AGAINST = "2.6.6"  # pytorch_lightning version every name of this module was checked against
OVERRIDDEN = ("_parse_ckpt_path", "_set_seed", "_run_subcommand")  # private LightningCLI methods overridden
READ = ("_get",)  # private LightningCLI methods called
# hyper-parameters of a checkpoint that --ckpt_path does not apply over the config (_parse_ckpt_path)
CONFIG_OWNED_HPARAMS = ("network", "loss", "_instantiator", "_class_path")


class LightningCLIHooks(LightningCLI):
    """``LightningCLI`` whose private steps call the named hooks below (module docstring)."""

    # ------------------------------------------------------------------ hooks (no-ops here)
    def resolve_ckpt_path(self) -> None:
        """Turn the parsed ``ckpt_path`` into what Lightning may load (or ``None``), with one clear error."""

    def check_seed(self, seed) -> None:
        """Refuse a ``seed_everything`` Lightning would silently replace."""

    def command_failed(self, err: BaseException) -> None:
        """The command (its ``before_``/``after_`` hooks included) raised ``err``; it is re-raised after."""

    def command_ended(self) -> None:
        """The command ended, successfully or not."""

    def config_value(self, key: str, default=None):
        """``key`` of the running command's configuration (LightningCLI's private ``_get``)."""
        return self._get(self.config, key, default)

    # ------------------------------------------------------------------ the private overrides
    def _parse_ckpt_path(self) -> None:
        # Lightning's version applies *every* hyper-parameter of the checkpoint over the parsed config.
        # A checkpoint now stores the network's and the loss's settings (so that
        # SpikingClassifier.load_from_checkpoint needs no argument); on the command line those would
        # silently beat the user's --model.network / --model.loss flags (a resume with another
        # regulariser, a test with other counts). hm2bp applies the other keys only: the config keeps
        # the network and the loss, and a network that does not fit the weights is refused when the
        # checkpoint is loaded (hm2bp.cli_checks.check_checkpoint_fits).
        self.resolve_ckpt_path()
        command = self.config.get("subcommand")
        ckpt_path = self.config[command].get("ckpt_path") if command else None
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        hparams = torch.load(ckpt_path, weights_only=True, map_location="cpu").get("hyper_parameters", {})
        hparams = {k: v for k, v in hparams.items() if k not in CONFIG_OWNED_HPARAMS}
        if hparams:
            self.config = self.parser.parse_object({command: {"model": hparams}}, self.config)

    def _set_seed(self) -> None:
        self.check_seed(self._get(self.config, "seed_everything"))
        super()._set_seed()

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except BaseException as err:
            self.command_failed(err)
            raise
        finally:
            self.command_ended()


def drop_anonymous_none(trainer) -> None:
    """Lightning passes ``anonymous=None`` to ``wandb.init``, which wandb 0.31 warns about on every run."""
    for lg in trainer.loggers:
        if isinstance(lg, WandbLogger) and lg._wandb_init.get("anonymous") is None:
            lg._wandb_init.pop("anonymous", None)


def finish_wandb(trainer, exit_code: int) -> None:
    """Close the W&B run this command opened (a failed one as failed, never left 'crashed'); reading
    ``_experiment`` rather than ``experiment`` never starts a run that was not started."""
    for lg in getattr(trainer, "loggers", []) or []:
        if isinstance(lg, WandbLogger) and getattr(lg, "_experiment", None) is not None:
            try:
                lg._experiment.finish(exit_code=exit_code)  # a second finish() does nothing
            except Exception:  # noqa: BLE001 - finishing is best effort
                pass


def relaunches_command_line(trainer) -> bool:
    """Whether Lightning starts the other DDP processes by running this command line again (they then
    find the run folder in ``$HM2BP_RUN_DIR``)."""
    return isinstance(trainer.strategy.launcher, _SubprocessScriptLauncher)
