"""Helpers of the evaluate and gate stages, one job per module.

``quality``: decisions from model scores, scikit-learn metrics, plot tables, deterministic sampling.
``reports``: Evidently 0.7 drift and classification reports and the named metrics read from them.
``champion``: finding and checking the current release to compare against.
``decision``: the gate's release rules and their human-readable rendering.
``bundle``: the release candidate's manifest and the atomic swap of its folder.

Nothing here imports Prefect or does I/O at import; Evidently and scikit-learn load lazily.
Leaves out: running the stages (``flows.stages.evaluate`` and ``flows.stages.gate`` wire these).
"""
