"""The speed benchmark: the notebook's way against ``cartpole_core``, stage by stage.

Run ``python -m bench`` (writes BENCHMARKS.md) or ``python -m bench --quick`` (a smoke run).
Modules: :mod:`bench.core` (settings, stage registry, timing), :mod:`bench.reference` (the
notebook's code, faithfully), :mod:`bench.stages` (stages 1-5), :mod:`bench.dashboard`
(stage 6, headless Chromium), :mod:`bench.report` (the Markdown), :mod:`bench.cli`.
Not part of the unit tests.
"""
