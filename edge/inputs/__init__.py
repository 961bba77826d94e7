"""Live inputs on the runner: plant values from MQTT or OPC UA in, decisions out, labels joined.

``source`` is the adapter interface and its types, ``settings`` the ``[inputs]`` section; the core (row
assembly, triggers, staleness, the label join, counters) needs only the standard library. A protocol
client (``mqtt``: paho-mqtt, ``opcua``: asyncua) is imported only when the configuration names it.
"""
