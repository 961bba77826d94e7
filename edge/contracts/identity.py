"""A device's identity in its X.509 certificate, the same for the issuer (hub) and the holder (runner).

A device certificate names its device twice: the subject's common name is the device id, and a
subjectAltName URI ``urn:edgeloop:device:<device_id>`` carries it in the form the hub trusts (a CN is
free text in many tools; the URI is unambiguous). ``device_uri`` builds the URI; ``device_id_from_uri``
reads it back and returns None for anything that is not a valid device URI. Leaves out certificates
themselves (parsing and signing are the hub's ``hub.pki`` and the runner's ``edge.device_keys``).
"""

from __future__ import annotations

from edge.contracts.names import is_valid_device_id

__all__ = ["DEVICE_URI_PREFIX", "device_id_from_uri", "device_uri"]

DEVICE_URI_PREFIX = "urn:edgeloop:device:"


def device_uri(device_id: str) -> str:
    if not is_valid_device_id(device_id):
        raise ValueError(f"invalid device id {device_id!r}")
    return DEVICE_URI_PREFIX + device_id


def device_id_from_uri(uri: str) -> str | None:
    """The device id of a ``urn:edgeloop:device:<id>`` URI; None when ``uri`` is anything else."""
    if not uri.startswith(DEVICE_URI_PREFIX):
        return None
    device_id = uri[len(DEVICE_URI_PREFIX):]
    return device_id if is_valid_device_id(device_id) else None
