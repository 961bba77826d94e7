"""edgeloop's hub: one HTTP(S) service for devices (enrollment, uploads, summaries, heartbeats, certificate
renewal), operators (the fleet) and the read-only release repository.

FastAPI on SQLAlchemy (SQLite by default, PostgreSQL by URL); ``hub.app.create_app(settings, clock)``
builds it, ``edgeloop hub serve`` runs it with uvicorn, ``hub.embedded`` runs it inside a program. In
layers, each importing only those below it:

- ``tls/``: serving HTTPS with uvicorn (how the hub listens, its reloading certificate, the client
  certificate put in each request's scope); below everything that handles a request.
- ``routes/``: HTTP handlers only (parse the request, call one function, map errors to status codes);
  ``auth`` (who is calling: certificate or token) and ``observe`` (request logs and metrics) around them;
  ``peer`` (where a client certificate came from) and ``peer_certificates`` (what it says, cached) below.
- ``schemas/``: request and response bodies (pydantic) with their OpenAPI examples.
- ``intake``: what happens to an accepted body (verify, check, store, once); ``enrollment``: issuing a
  device's certificate for a one-time code or its current certificate; ``fleet_document``,
  ``fleet_loop``, ``fleet_status`` and ``fleet_view``: the fleet from stored rows, as JSON and a page.
- ``checks/``: pure checks of headers and bodies (size, gzip, digest, Parquet/CSV structure, summaries).
- ``store/``: every SQL statement and every file read or written; ``db``: the tables and the engine;
  ``registry``: the rules for adding and revoking devices and giving them enrollment codes.
- ``settings`` (params.yaml ``hub:``), ``clock`` (every timestamp), ``tokens`` (and enrollment codes),
  ``pki`` (the plant CA: issuing certificates), ``metrics``.

Names, patterns, limits and media types both sides rely on come from edge.contracts. Importing this
package does nothing heavy; the hub imports neither the pipeline (flows) nor the CLI (edgeloop).
"""
