"""Helpers shared by the tests (no test file imports another), one module per topic:

* :mod:`tests.helpers.paths`: the repository and the experiment configs;
* :mod:`tests.helpers.cli_args`: arguments of the tiny and smoke CLI fits (reachable counts at short T);
* :mod:`tests.helpers.cli_runs`: digits runs through the CLI in a subprocess, their run folders,
  metrics and checkpoint weights (DDP, resume, run folders);
* :mod:`tests.helpers.digits`: the digits model ("boring SNN"), data and trainer of the callback
  tests, and the interop network;
* :mod:`tests.helpers.recording`: callbacks and a logger that record a fit, and the statistics
  expected from the recorded counts;
* :mod:`tests.helpers.spike_trains`: random refractory spike trains;
* :mod:`tests.helpers.conv_reference`: pairwise references of the conv/pool HM2-BP rule.
"""
