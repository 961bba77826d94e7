"""The ingest stage's single-job parts: find batches, read (``loader``, ``reader``), normalise many batches
together (``combine``, ``normalise``), per-batch checks (``structure``), validate (GX: ``suite``,
``validate``), attribute bulk failures to batches (``attribute``, ``reasons``), drop repeated events
(``events``), quarantine, store.

``flows.stages.ingest.main`` wires them together. Nothing here imports Great Expectations at module
level (it costs seconds); ``flows.ingest.validate`` and ``flows.ingest.suite`` import it inside
functions. Nothing here does I/O at import. Leaves out: the stage's bookkeeping and totals
(``flows.stages.ingest``).
"""
