"""Request and response bodies of the hub's HTTP API, as pydantic models with their OpenAPI examples.

One module per API area: ``uploads`` (batch results and refusals), ``summaries``, ``heartbeats`` (what
a runner reports), ``enrollment`` (enrollment and renewal requests, the certificate answer), ``fleet`` (the
fleet document and the loop's estimates in it) and ``ops`` (health).
Limits and patterns come from edge.contracts (the device builds the same bodies). Leaves out handling
(hub.routes) and storage (hub.store).
"""
