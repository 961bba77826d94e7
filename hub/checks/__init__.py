"""Pure checks of what a device sends: headers, body size and encoding, body structure.

No HTTP, no database, no files: each function takes bytes or header strings and returns a value or
raises ``Refused(reason, detail)``; hub.routes turns a reason into a status code. One module per kind of
check: ``headers``, ``decoding`` (size bound, gzip), ``digest`` (key == sha256), ``batches``
(Parquet/CSV structure against the data schema) and ``summaries`` (a JSON object).
"""
