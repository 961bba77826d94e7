"""The hub's HTTP handlers, one module per API area: parse the request, call one function, map its errors.

``uploads``, ``summaries``, ``heartbeats``, ``enrollment`` (devices: enrollment and certificate
renewal), ``fleet`` (operators), ``releases`` (the TUF repository) and ``ops`` (health, metrics);
``bodies`` reads a bounded body and turns a refusal into its status code. Bodies are hub.schemas,
checks hub.checks, storage hub.store.
"""
