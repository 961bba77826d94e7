"""The closed loop: the monitor (when to retrain), fleet estimates from filtered uploads, and promotion
from canary to stable. Every decision goes to one append-only log (``flows.loop.log``)."""
