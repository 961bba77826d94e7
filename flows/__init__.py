"""edgeloop's cloud pipeline: stages (plain functions) and the Prefect flows that drive them.

``python -m flows STAGE`` is the driver dvc.yaml uses. Importing this package is cheap: nothing heavy
and no I/O happens at import.
"""
