"""edgeloop's device side: the edge runner (``edge.runner``, the ``edge-runner`` command) and the formats and
limits it shares with the cloud (``edge.contracts``).

This package may import only the standard library, numpy, onnxruntime, tuf (urllib3 through tuf) and
cryptography: gateways are small.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"  # the runner version a manifest's ``min_runner_version`` is compared with
