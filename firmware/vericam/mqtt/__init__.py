"""The firmware's own MQTT 3.1.1 client: a sans-IO codec under an asyncio connection layer.

`codec` speaks the protocol without I/O; `client.MQTTClient` keeps the connection alive
(reconnect with backoff, resubscribe, QoS-1 retransmit, keepalive). Why not umqtt.simple:
it blocks, has no retransmit and asserts on protocol errors, and micropython-lib ships it
only through the mip index, not PyPI. The resilience follows Peter Hinch's mqtt_as: one
task owns the socket, a supervisor reconnects with backoff and jitter.
"""

from .codec import MQTTError, MQTTProtocolError, MQTTConnectRefused
from .client import MQTTClient, MQTTTimeout, MQTTExpired, MQTTDisconnected, DEFAULTS
