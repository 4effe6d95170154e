"""What ``hm2bp --help`` and ``hm2bp <verb> --help`` print: one screen each, without loading Lightning.

* ``hm2bp --help``: every verb and every option the command takes, one line each (:func:`main_help`);
* ``hm2bp fit|validate|test|predict --help``: the options people change for that verb, with
  examples and where to find the rest (:func:`verb_help`);
* ``hm2bp <verb> --help full``: LightningCLI's complete help (every ``Trainer`` argument and the
  class options; about 1,500 lines for ``fit``); ``--model.network.help hm2bp.SpikingNetwork`` (or
  any class path) prints the arguments of one class;
* ``hm2bp export --help``: the export parser's own (:mod:`hm2bp.nir.command`).

:func:`help_request` reads the command line and says which of these it asks for. Every option named
here is checked against the parser by ``tests/cli/test_help.py``.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass

LIGHTNING_VERBS = ("fit", "validate", "test", "predict")
VERBS = {
    "fit": "train a network (a new run folder), optionally testing it after",
    "validate": "score a checkpoint on the validation split",
    "test": "score a checkpoint on the test split",
    "predict": "write a checkpoint's predictions to predictions.csv",
    "export": "write a trained network as a NIR graph, for other simulators",
}
HELP_FLAGS = ("-h", "--help")
FULL = "full"  # `--help full`: LightningCLI's complete help
WIDTH = 100
_FLAG_COLUMN = 34


@dataclass(frozen=True)
class Option:
    """One line of a help page: ``flag`` (with its metavar), what it does, and for which verbs.

    ``example`` is a value the parser accepts (``tests/cli/test_help.py`` passes it); ``None``: a
    flag that takes none or is not a parser option (``--debug``, ``--help``)."""

    flag: str
    text: str
    verbs: tuple[str, ...] = LIGHTNING_VERBS
    example: str | None = None


EVAL = ("validate", "test", "predict")
# the options people change, in the order the verb pages list them
OPTIONS = (
    Option("-c, --config FILE", "experiment file, configs/experiment/*.yaml (required; repeatable)",
           example="configs/experiment/mnist_mlp.yaml"),
    Option("--data.init_args.data_dir DIR", "dataset folder (default $HM2BP_DATA_DIR, else ./data)",
           example="/tmp/data"),
    Option("--trainer.max_epochs N", "number of training epochs", ("fit",), example="3"),
    Option("--model.network.init_args.thresholds LIST", "firing threshold of each layer, e.g. [20,8]",
           ("fit",), example="[20,8]"),
    Option("--data.init_args.time_steps T", "time steps per sample (thresholds and counts scale with T)",
           example="100"),
    Option("--data.init_args.batch_size N", "global batch, split over devices x nodes", example="16"),
    Option("--trainer.accelerator NAME", "cpu, gpu or auto", example="cpu"),
    Option("--trainer.devices N", "how many devices (2 or more: DDP), or a list of ids", example="1"),
    Option("--ckpt_path FILE|last", "resume a checkpoint file, or the latest run (last)", ("fit",),
           example="last"),
    Option("--ckpt_path FILE|last|best", "the weights: a file, or last/best of the latest run", EVAL,
           example="last"),
    Option("--seed_everything N|true", "seed of the weights and the spike encoding (true: a random one)",
           example="3"),
    Option("--test_after_fit true|false", "then test the best checkpoint, print TEST ACCURACY", ("fit",),
           example="false"),
    Option("--trainer.default_root_dir DIR", "experiment folder, holding its run folders", example="/tmp/runs"),
    Option("--trainer.logger false", "no W&B run (the run folder still gets metrics.csv)", example="false"),
    Option("--threads N", "CPU threads of torch (default 1; 0: torch's default)", example="2"),
    Option("--print_config", "print the resolved configuration (every key) and exit"),
    Option("--debug", "a full traceback instead of a one-line error (or HM2BP_DEBUG=1)"),
    Option("-h, --help [full]", "this page; full: every option LightningCLI knows (long)"),
)
# `hm2bp --help`: every option of the verbs, one line each
MAIN_OPTIONS = (
    Option("-c, --config FILE", "experiment file, configs/experiment/*.yaml (required; repeatable)"),
    Option("--<section>.<key> VALUE", "any key of the trainer, model or data section"),
    Option("--ckpt_path FILE|last|best", "fit: resume from it; the others: the weights (export: a file)"),
    Option("--seed_everything N|true", "seed of the weights and the spike encoding (true: a random one)"),
    Option("--test_after_fit true|false", "fit: test the best checkpoint afterwards"),
    Option("--threads N", "CPU threads of torch (default 1; 0: torch's default)"),
    Option("--allocator keep|system", "keep freed memory for the next step, or the system's default"),
    Option("--weights_only true|false", "load --ckpt_path with torch.load(weights_only=...)"),
    Option("--print_config", "print the resolved configuration and exit"),
    Option("--out FILE, --overwrite", "export: the NIR file to write, and replace it if it exists"),
    Option("--debug", "a full traceback instead of a one-line error (or HM2BP_DEBUG=1)"),
    Option("-h, --help [full]", "help; after a verb, full lists every option LightningCLI knows"),
)
EXAMPLES = {
    "fit": (("hm2bp fit --config configs/experiment/digits.yaml", "the embedded digits, about a minute"),
            ("hm2bp fit --config configs/experiment/mnist_mlp.yaml --data.init_args.data_dir ~/data", ""),
            ("hm2bp fit --config configs/experiment/digits.yaml --ckpt_path last", "resume the latest run")),
    "validate": (("hm2bp validate --config configs/experiment/digits.yaml --ckpt_path best", ""),),
    "test": (("hm2bp test --config configs/experiment/digits.yaml --ckpt_path best",
              "prints TEST ACCURACY: ... on N samples"),),
    "predict": (("hm2bp predict --config configs/experiment/digits.yaml --ckpt_path best", ""),),
}
INTRO = {
    "fit": "Train a spiking network with HM2-BP. Every fit writes its checkpoints, config.yaml and "
           "metrics.csv into a new run folder under trainer.default_root_dir.",
    "validate": "Score a checkpoint on the validation split and print VALIDATION ACCURACY with the number "
                "of samples scored. A run's checkpoint is scored into <run>/validate-<date>-<time>-<hex>.",
    "test": "Score a checkpoint on the test split and print TEST ACCURACY with the number of samples "
            "scored. A run's checkpoint is scored into <run>/test-<date>-<time>-<hex>.",
    "predict": "Run a checkpoint on the predict split and write one row per sample (prediction, output "
               "counts, label) to <run>/predict-<date>-<time>-<hex>/predictions.csv.",
}


def _lines(flag: str, text: str) -> list[str]:
    """``  flag  text`` wrapped to :data:`WIDTH`; a long flag gets a line of its own."""
    indent = " " * _FLAG_COLUMN
    head = f"  {flag}"
    if len(head) < _FLAG_COLUMN - 1:
        return textwrap.wrap(text, WIDTH, initial_indent=head.ljust(_FLAG_COLUMN), subsequent_indent=indent)
    return [head, *textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent)]


def main_help() -> str:
    """``hm2bp --help``: every verb and every option, one line each."""
    out = ["usage: hm2bp <verb> --config FILE [options]", "",
           "Spiking neural networks trained with HM2-BP, on PyTorch Lightning (LightningCLI).", "", "verbs:"]
    for verb, text in VERBS.items():
        out += _lines(verb, text)
    out += ["", "options (after the verb):"]
    for opt in MAIN_OPTIONS:
        out += _lines(opt.flag, opt.text)
    out += ["", "hm2bp <verb> --help: the options people change for that verb, with examples;",
            "hm2bp <verb> --help full: all of them. Docs: docs/configuration.md, docs/troubleshooting.md.",
            "", "example: hm2bp fit --config configs/experiment/digits.yaml"]
    return "\n".join(out) + "\n"


def verb_help(verb: str) -> str:
    """``hm2bp <verb> --help`` for ``fit``, ``validate``, ``test`` or ``predict`` (one screen)."""
    out = [f"usage: hm2bp {verb} --config FILE [options]", "", *textwrap.wrap(INTRO[verb], WIDTH), "", "examples:"]
    for command, note in EXAMPLES[verb]:
        out.append(f"  {command}")
        if note:
            out.append(f"      ({note})")
    out += ["", "options people change:"]
    for opt in OPTIONS:
        if verb in opt.verbs:
            out += _lines(opt.flag, opt.text)
    out += ["", *textwrap.wrap(
        "Any constructor argument is set the same way: --model.network.init_args.<arg>, "
        "--model.loss.init_args.<arg>, --model.optimizer.init_args.<arg>, --data.init_args.<arg>, "
        "--trainer.<arg>. To see them:", WIDTH)]
    out += _lines(f"hm2bp {verb} --config FILE --print_config", "every key, with the value the run would use")
    out += _lines(f"hm2bp {verb} --model.network.help hm2bp.SpikingNetwork",
                  "the arguments of one class (--data.help CLASS, ...)")
    out += _lines(f"hm2bp {verb} --help full", "LightningCLI's complete list (every Trainer argument; long)")
    out += ["Docs: docs/configuration.md (keys), docs/troubleshooting.md (errors)."]
    return "\n".join(out) + "\n"


def verb_of(argv: list[str]) -> tuple[int, str] | None:
    """``(index, verb)`` of the first argument that is not an option (skipping the value of a
    top-level ``-c``/``--config``), or ``None``."""
    k = 0
    while k < len(argv):
        arg = argv[k]
        if arg in ("-c", "--config"):
            k += 2
            continue
        if not arg.startswith("-"):
            return k, arg
        k += 1
    return None


def help_request(argv: list[str]) -> tuple[str, list[str]] | None:
    """What help ``argv`` asks for: ``("main", argv)``, ``("verb", argv)`` (a short page),
    ``("full", argv without 'full')`` (LightningCLI prints it) or ``None`` (no help asked, or
    ``export``'s own)."""
    found = verb_of(argv)
    if (argv[:1] and argv[0] in HELP_FLAGS) or found is None:
        return ("main", argv) if any(a in HELP_FLAGS for a in argv) else None
    k, verb = found
    after = argv[k + 1:]
    asks = [j for j, a in enumerate(after) if a in HELP_FLAGS]
    if verb not in LIGHTNING_VERBS or not asks:
        return None
    j = asks[0]
    if j + 1 < len(after) and after[j + 1] == FULL:
        return "full", argv[:k + 1] + after[:j + 1] + after[j + 2:]
    return "verb", argv
