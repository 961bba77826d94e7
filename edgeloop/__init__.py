"""edgeloop: the command line and the cloud-side helpers shared by the simulator, flows and hub.

Importing this package does nothing heavy; see ``edgeloop.cli`` for the ``edgeloop`` command.
"""

__version__ = "0.1.0"
