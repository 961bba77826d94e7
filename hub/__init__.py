"""edgeloop's hub: one HTTP service for devices (uploads, summaries, heartbeats), operators (the fleet)
and the read-only release repository.

FastAPI on SQLAlchemy (SQLite by default, PostgreSQL by URL); ``hub.app.create_app(settings, clock)``
builds it, ``edgeloop hub serve`` runs it with uvicorn, ``hub.embedded`` runs it inside a program. In
layers, each importing only those below it:

- ``routes/``: HTTP handlers only (parse the request, call one function, map errors to status codes);
  ``auth`` (who is calling) and ``observe`` (request logs and metrics) around them.
- ``schemas/``: request and response bodies (pydantic) with their OpenAPI examples.
- ``intake``: what happens to an accepted body (verify, check, store, once); ``fleet_document``,
  ``fleet_loop``, ``fleet_status`` and ``fleet_view``: the fleet from stored rows, as JSON and a page.
- ``checks/``: pure checks of headers and bodies (size, gzip, digest, Parquet/CSV structure, summaries).
- ``store/``: every SQL statement and every file read or written; ``db``: the tables and the engine;
  ``registry``: the rules for adding and revoking devices.
- ``settings`` (params.yaml ``hub:``), ``clock`` (every timestamp), ``tokens``, ``metrics``.

Names, patterns, limits and media types both sides rely on come from edge.contracts. Importing this
package does nothing heavy; the hub imports neither the pipeline (flows) nor the CLI (edgeloop).
"""
