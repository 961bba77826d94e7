"""edgeloop: the command line, the demo and the test kits, on top of flows, hub, simulator and edge.

Importing this package does nothing heavy; see ``edgeloop.cli`` for the ``edgeloop`` command.
Leaves out the logic itself (``flows``, ``hub``, ``edge``): this layer only wires and presents it.
"""

__version__ = "0.1.0"
