"""Serving the hub over TLS with uvicorn: how it listens, its reloading certificate, and the peer's certificate.

- ``listen``: how ``edgeloop hub serve`` (and hub.embedded) listen: HTTPS with the hub's certificate;
  plain HTTP on loopback only (alone, or behind a TLS-terminating proxy on the same host); plain HTTP on
  any other address is refused. Gives uvicorn its TLS options.
- ``context``: the server ``SSLContext`` (edge.contracts.tls.server_context, the plant CA for client
  certificates) that picks up a re-issued certificate, key or CA for new connections, without a restart.
- ``protocol``: uvicorn's HTTP protocol (httptools, else h11) with the ASGI TLS extension added to every
  request's scope: ``scope["extensions"]["tls"]["client_cert_chain"]`` holds the verified client
  certificate as PEM (uvicorn leaves it out).

Below hub.auth and the routes, which read only the scope. Leaves out issuing certificates (hub.pki) and
deciding who a certificate belongs to (hub.auth).
"""
