"""The firmware's own MQTT 3.1.1 client: a sans-IO codec under an asyncio connection layer.

`codec` speaks the protocol without I/O; `client.MQTTClient` keeps the connection alive
(reconnect with backoff, resubscribe, QoS-1 retransmit, keepalive). See DESIGN.md for why
the firmware carries its own client instead of umqtt.simple.
"""

from .codec import MQTTError, MQTTProtocolError, MQTTConnectRefused
from .client import MQTTClient, MQTTTimeout, MQTTExpired, MQTTDisconnected, DEFAULTS
