"""edgeloop's device side: formats shared with the cloud, and (later) the edge runner.

This package may import only the standard library, numpy, onnxruntime and tuf: gateways are small.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"  # the runner version a manifest's ``min_runner_version`` is compared with
