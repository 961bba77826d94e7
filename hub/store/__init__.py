"""Data access: every SQL statement and every file the hub reads or writes, one module per kind of record.

``devices`` (the registry's rows and the token lookup), ``certificates`` (issued device certificates and
their per-request lookup), ``enrollment_codes`` (one-time codes, used up once), ``uploads`` (upload
rows), ``batches`` (batch files in the landing zone), ``heartbeats`` (each device's latest heartbeat),
``fleet`` (the fleet query), ``summaries`` (summary files), ``estimates`` (the loop's estimates file),
``release_files`` (the TUF repository, read-only, and its root.json), ``plant_ca`` (the CA certificate,
re-read when it changes), ``admin_token`` (its 0600 file, created once) and ``dialect`` (the
``INSERT ... ON CONFLICT`` of SQLite and PostgreSQL). Tables, engine and migrations are hub.db.
Times are passed in (from the hub's clock), never read here. Leaves out HTTP and body checks.
"""
