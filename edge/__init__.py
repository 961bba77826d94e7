"""edgeloop's device side: formats shared with the cloud, and (later) the edge runner.

This package may import only the standard library, numpy, onnxruntime and tuf: gateways are small.
"""

__all__: list[str] = []
