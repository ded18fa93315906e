"""From the broker to durable storage: the MQTT service, verification and reassembly, supervision, the clock and metrics.

`service.py` owns the MQTT 5 session (manual ack, `$share` group); `pipeline.py` turns a batch
of messages into stored captures, events and receipts through the storage repositories.
"""
