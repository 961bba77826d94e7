"""A live simulated plant (``edgeloop plant serve``): the simulator's machines over OPC UA or MQTT.

``source`` (parts and verdicts on a clock), ``layout`` (node ids and topics), ``opcua_server``,
``mqtt_publisher``, ``embedded_broker``, ``scoreboard`` (predictions written back, scored on the truth),
``runner_config`` (the runner's ``[inputs]`` section) and ``cli``. Protocol libraries are imported only by
the module that uses them.
"""
