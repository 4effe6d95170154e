"""Command-line pieces shared by the CLI tests."""
from __future__ import annotations

from hm2bp.checks import max_spike_count


def count_args(time_steps: int, injection: bool = True, refractory: int = 2) -> list[str]:
    """Desired/undesired/margin (and the injected count) that an output neuron can reach at ``time_steps``:
    the experiments' 35/5/5 are for T = 400 and are refused at the short T of the tests."""
    top = max_spike_count(time_steps, refractory)
    desired, low = max(2, int(0.8 * top)), 1
    args = ["--model.loss.init_args.desired", str(desired), "--model.loss.init_args.undesired", str(low),
            "--model.loss.init_args.margin", str(low)]
    return args + (["--model.network.init_args.target_injection", str(desired)] if injection else [])
