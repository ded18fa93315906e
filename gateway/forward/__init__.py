"""Forwarding alarms to the ARC's own alarm receivers over SIA DC-09.

The ARC already runs alarm-management software fed by alarm receivers that speak ANSI/SIA
DC-09 (SIA DCS or Ademco Contact ID events, usually AES-encrypted). This package makes every
Vericam alarm reach that pipeline, under the account number the panel itself reports with:

- `gateway.forward.dc09`: the DC-09 framing, sans-IO: bytes for a message, an answer from bytes.
- `gateway.forward.codes`: which SIA DCS and Contact ID code each Vericam event goes out as.
- `gateway.forward.outbox`: the queue of reports not yet acknowledged, and what a durable one
  must promise (`Outbox`); an in-memory and a JSON-lines file implementation.
- `gateway.forward.transmitter`: one thread per receiver pair (primary and backup) that takes
  reports from the outbox and delivers them, with retries, failover and NULL supervision.
- `gateway.forward.forwarder`: what the ingest calls (`Forwarder.alarm`, `Forwarder.verification`).
- `gateway.forward.config`: what an ARC integrator configures (receivers, key file, sites).
"""
