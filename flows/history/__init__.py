"""Your own history without scripts: read a historian export, infer its schema, import it into the landing zone.

``reader`` finds the CSV/Parquet files and streams them in bounded Arrow chunks, and names the role
columns (event id, event time, device id); ``infer`` turns their statistics into a ``schema`` section;
``params_file`` writes that section into params.yaml; ``importer`` copies an export into
``<landing>/<device>/`` batches, adding the role columns it lacks. The CLI is ``edgeloop.schema_cli``
and ``edgeloop.import_cli``. Leaves out validating the rows (the ingest stage does that, once they are
in the landing zone).
"""
