"""The gateway service: an MQTT v5 consumer that feeds `gateway.ingest.pipeline` and acknowledges late.

Threads: paho's network loop only enqueues (token, topic, payload) and never blocks, because
the broker may send at most ReceiveMaximum unacknowledged messages, the capacity of the queue.
One writer thread drains the queue in batches, hands each batch to `Ingest.process_batch` (one
transaction, committed with files and directories fsynced), THEN acknowledges every message of
the batch (`client.ack`), THEN publishes the receipts and time messages. A PUBACK therefore
always means "durable here", and a receipt always means "durable and acknowledged".

Receipts of what a disarm may send (a cover, or disarm or duress photos: `Outbound.disarm_shaped`)
are held until `disarm_receipt_floor_s` after the batch's first message arrived (`HeldReceipts`).
A cover's bytes are dropped and photos are opened and stored, which takes longer, and the
broker sees when the last chunk came and when the receipt left: without the floor, that
delay would tell a duress disarm's photos from a normal disarm's cover (docs/PROTOCOL.md
§4.7). Storing that takes longer than the floor is not hidden.

The session is persistent (`clean_start=False`, a session expiry, a client id stable per data
directory), so messages that arrive while the gateway is down wait in the broker. Messages of a
connection that has since dropped are processed but not acknowledged (their packet ids belong
to the old connection); the broker delivers them again and the replay window answers them.

Every device is held to its quotas (`limits`, gateway.ingest.quotas). A message over them is
refused as `rate_limited` and acknowledged with its batch like any other refusal, so a flood
never fills the broker's in-flight window for good; past its quota a flood costs each message
its checks and its count, no write, so another device's alarm queued behind it barely waits.

With `dc09` settings (`vericam gateway run --dc09 ...`), alarms are also forwarded to the ARC's
own alarm receivers over SIA DC-09 (`gateway.forward`): the ingest queues each report in the
batch's transaction, and the transmitters' threads deliver it, so a receiver never holds up
the ingest. Their counters and backlog are in the metrics. An alarm does not wait on the ingest
either: an event is batched with what is queued already but waits for nothing more, and in a
batch that also holds photo chunks the events are committed first, in a transaction of their
own, so their reports go out before the chunks are written (`events_first`).
"""

from __future__ import annotations

import logging
import queue
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.storage.blobstore import FileBlobStore
from gateway.ingest.clock import WorldClock
from gateway.ingest.pipeline import SPOOL_EXPIRY_MS, BatchResult, Ingest, Message
from gateway.ingest.metrics import Metrics, MetricsServer
from gateway.ingest.quotas import DeviceLimits
from gateway.storage.store import Store, now_ms

if TYPE_CHECKING:
    from gateway.forward.config import Settings as Dc09Settings

SWITCH_INTERVAL_S = 0.001
SHARE_GROUP = "vericam-gw"
# Seconds from the arrival of the first message of the batch that completed a cover or
# disarm-shaped photos to their receipt: longer than storing 3 photos takes, in files or S3.
# Storing takes real time, so the floor is real time, but never more than
# DISARM_RECEIPT_FLOOR_MAX_WORLD_S of world time: in a run at 60 x, 1 s would be a minute of
# the device's world, past its 30 s receipt timeout.
DISARM_RECEIPT_FLOOR_S = 1.0
DISARM_RECEIPT_FLOOR_MAX_WORLD_S = 10.0
SUBSCRIPTION = f"$share/{SHARE_GROUP}/vc/v1/+/up/#"
CLIENT_ID_FILE = "gateway_id"


class HeldReceipts:
    """Receipts waiting for their floor: each is published by a timer when it is due, or at once by `flush`."""

    def __init__(self, publish: Callable[[str, bytes], None]):
        self._publish = publish
        self._lock = threading.Lock()
        self._timers: dict[threading.Timer, tuple[str, bytes]] = {}

    def hold(self, topic: str, payload: bytes, delay_s: float) -> None:
        if delay_s <= 0:
            self._publish(topic, payload)
            return
        timer = threading.Timer(delay_s, lambda: self._due(timer))
        timer.daemon = True
        with self._lock:
            self._timers[timer] = (topic, payload)
        timer.start()

    def _due(self, timer: threading.Timer) -> None:
        with self._lock:
            held = self._timers.pop(timer, None)
        if held is not None:
            self._publish(*held)

    def flush(self) -> None:
        """Publish every held receipt now (the gateway is stopping: nothing waits on a timer)."""
        with self._lock:
            held = list(self._timers.items())
            self._timers.clear()
        for timer, (topic, payload) in held:
            timer.cancel()
            self._publish(topic, payload)

    def __len__(self) -> int:
        with self._lock:
            return len(self._timers)


def stable_client_id(data_dir: Path) -> str:
    """A client id kept in the data directory, so restarts resume the same MQTT session."""
    path = data_dir / CLIENT_ID_FILE
    if path.exists():
        return path.read_text().strip()
    cid = "vericam-gw-" + secrets.token_hex(6)
    path.write_text(cid + "\n")
    return cid


def events_first(batch: list[Message]) -> list[list[Message]]:
    """A batch as the parts to commit one after the other: its events (alarms, cancellations,
    technical events) first, then the rest (capture chunks, status, heartbeats).

    An alarm that arrives with a burst of photo chunks is committed, and handed to the DC-09
    transmitters, before those chunks are written: it never waits for photos. Both parts are
    acknowledged together after the second commit, in the order received."""
    events = [m for m in batch if is_event(m)]
    if not events or len(events) == len(batch):
        return [batch]
    return [events, [m for m in batch if not is_event(m)]]


def is_event(msg: Message) -> bool:
    return msg.topic.endswith("/up/event")


class Gateway:
    """One gateway process: MQTT consumer, writer thread, store."""

    def __init__(self, data_dir: str | Path, broker_host: str = "127.0.0.1", broker_port: int = 1883,
                 client_id: str | None = None, retention_days: int | None = None,
                 log: Callable[[str], None] | None = None, queue_capacity: int = 256,
                 batch_max: int = 256, batch_wait_s: float = 0.002, session_expiry_s: int = 7 * 24 * 3600,
                 expire_check_s: float = 5.0, username: str | None = None, password: str | None = None,
                 metrics_port: int | None = None, sweep_interval_s: float | None = None, sweep: bool = True,
                 clock: WorldClock | None = None, db: str | None = None, dc09: "Dc09Settings | None" = None,
                 limits: DeviceLimits | None = DeviceLimits(),
                 disarm_receipt_floor_s: float = DISARM_RECEIPT_FLOOR_S):
        self.data_dir = Path(data_dir)
        # The host clock, or a simulated run's scaled world clock (gateway/ingest/clock.py).
        self.clock = clock or WorldClock()
        self.db = db  # None: DATA/database.toml, else SQLite in the data directory (gateway.storage.sqldb)
        self.broker_host = broker_host
        self.broker_port = broker_port
        self.retention_days = retention_days
        self.log = log if log is not None else logging.getLogger("vericam.gateway").info
        self.queue_capacity = queue_capacity
        self.batch_max = batch_max
        self.batch_wait_s = batch_wait_s
        self.session_expiry_s = session_expiry_s
        # Supervision is checked with the expiry: in scaled time, as often in world time.
        self.expire_check_s = max(0.05, expire_check_s / self.clock.scale)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.client_id = client_id or stable_client_id(self.data_dir)
        self._queue: queue.Queue = queue.Queue(maxsize=queue_capacity)
        self._generation = 0
        self._accepting = False
        self._stop = threading.Event()
        self._busy = False
        self._connected = threading.Event()
        self._worker: threading.Thread | None = None
        self._client: mqtt.Client | None = None
        self.store: Store | None = None
        self.ingest: Ingest | None = None
        self.stats = {"batches": 0, "messages": 0, "stored": 0, "rejected": 0, "max_batch": 0,
                      "commit_ms_total": 0.0}
        self.username = username
        self.password = password
        self.metrics = Metrics()
        self.metrics.gauge("vericam_queue_depth", self._queue.qsize)
        self.metrics.gauge("vericam_retention_backlog_images", self._retention_backlog)
        self.metrics_port = metrics_port
        self.sweep_interval_s = sweep_interval_s
        self.sweep_enabled = sweep
        self.sweeper = None  # gateway.governance.retention.SweeperThread, started with the gateway
        self._metrics_server: MetricsServer | None = None
        self.dc09 = dc09
        self.limits = limits  # each device's quotas (gateway.ingest.quotas); None: none
        self.forwarder = None  # gateway.forward.forwarder.Forwarder, started with the gateway when dc09 is set
        # Real seconds, at most DISARM_RECEIPT_FLOOR_MAX_WORLD_S of world time (0: no floor).
        self.disarm_receipt_floor_s = min(disarm_receipt_floor_s, DISARM_RECEIPT_FLOOR_MAX_WORLD_S / self.clock.scale)
        self.held = HeldReceipts(self._publish)

    # Lifecycle -----------------------------------------------------------------------------
    def start(self, connect_timeout: float = 10.0) -> "Gateway":
        from gateway.governance.retention import RetentionPolicy, Sweeper, SweeperThread

        # Validated before anything starts: a hold above the legal maximum refuses to run.
        policy = RetentionPolicy.load(self.data_dir, image_days=self.retention_days,
                                      sweep_interval_s=self.sweep_interval_s)
        # The network threads (MQTT in, DC-09 out) wait on sockets and then need the interpreter
        # back from the writer thread, which holds it for up to the switch interval (5 ms by
        # default) while it verifies and writes photo chunks: 1 ms bounds that wait for an alarm.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        self.store = Store.open(self.data_dir, db=self.db)
        try:  # a missing bucket or wrong credentials refuse to start, with the store's own words
            self.store.blobs.check()
        except Exception:
            self.store.close()
            self.store = None
            raise
        default = isinstance(self.store.blobs, FileBlobStore) and self.store.blobs.root == self.store.blob_dir
        self.log(f"images are stored in {'files under DATA/blobs' if default else self.store.blobs.describe()}")
        # raises if there is no ARC key yet. An upload takes real time, which does not scale:
        # the spool expiry (a transport timer) stays 10 real minutes in scaled time.
        if self.dc09 is not None:
            from gateway.forward import service as forward

            try:  # a key file or receiver that cannot be used refuses to start, saying why
                self.forwarder = forward.start(self.store, self.dc09, owner=self.client_id, log=self.log)
            except Exception:
                self.store.close()
                self.store = None
                raise
            self.metrics.sources.append(lambda: forward.prometheus(self.forwarder) if self.forwarder else [])
        self.ingest = Ingest(self.store, log=self.log, clock=self.clock,
                             spool_expiry_ms=SPOOL_EXPIRY_MS * self.clock.scale, image_days=policy.image_days,
                             forward=self.forwarder, limits=self.limits)
        from gateway.governance.retention import record_policy

        record_policy(self.store, policy, now_ms())  # a changed retention config is audited
        if self.sweep_enabled:  # shares the store (and its lock) with the writer thread
            self.sweeper = SweeperThread(Sweeper(self.store, policy, log=self.log), self.log).start()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5, manual_ack=True)
        if self.username:
            client.username_pw_set(self.username, self.password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.reconnect_delay_set(0.2, 5)
        self._client = client
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = self.queue_capacity
        self._accepting = True
        self._stop.clear()
        self._worker = threading.Thread(target=self._run, name="vericam-gw-writer", daemon=True)
        self._worker.start()
        client.connect_async(self.broker_host, self.broker_port, keepalive=30, clean_start=False,
                             properties=props)
        client.loop_start()
        if self.metrics_port is not None:
            self._metrics_server = MetricsServer(self.metrics, self.metrics_port).start()
            self.log(f"metrics on http://127.0.0.1:{self._metrics_server.port}/metrics")
        if not self._connected.wait(connect_timeout):
            self.stop()
            raise ConnectionError(f"gateway could not connect to the broker at {self.broker_host}:"
                                  f"{self.broker_port} within {connect_timeout} s: is it running?")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking messages, finish (commit and acknowledge) what is queued, disconnect."""
        self._accepting = False
        self._stop.set()
        if self.sweeper:
            self.sweeper.stop(timeout)
            self.sweeper = None
        if self._worker:
            self._worker.join(timeout)
            self._worker = None
        self.held.flush()  # before the disconnect: a held receipt is durable and acknowledged
        if self._client:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        if self._metrics_server:
            self._metrics_server.stop()
            self._metrics_server = None
        if self.forwarder:  # after the writer: what it queued stays in the outbox for the next start
            from gateway.forward import service as forward

            forward.stop(self.forwarder)
            self.forwarder = None
        if self.store:
            self.store.close()
            self.store = None

    def _retention_backlog(self) -> int:
        """Images whose deletion day has passed but which are still stored: must stay 0.

        Read on a connection of its own: the scrape must not wait for the writer's batch."""
        from gateway.storage import sqldb
        from gateway.storage.retention import backlog_on_own_connection

        return backlog_on_own_connection(sqldb.database_target(self.data_dir, self.db), now_ms())

    def __enter__(self) -> "Gateway":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def wait_idle(self, timeout: float = 10.0, settle_s: float = 0.2) -> bool:
        """True once the queue has been empty and the writer idle for `settle_s`."""
        deadline = time.monotonic() + timeout
        quiet_since = None
        while time.monotonic() < deadline:
            if self._queue.empty() and not self._busy:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= settle_s:
                    return True
            else:
                quiet_since = None
            time.sleep(0.01)
        return False

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # paho callbacks (network thread: enqueue only) -------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.log(f"broker refused the connection: {reason_code}")
            return
        self._generation += 1
        client.subscribe(SUBSCRIPTION, options=mqtt.SubscribeOptions(qos=1))
        self.log(f"connected to {self.broker_host}:{self.broker_port} as {self.client_id} "
                 f"(session present: {bool(flags.session_present)})")

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if any(rc.is_failure for rc in reason_codes):
            self.log(f"broker refused the subscription {SUBSCRIPTION}: {reason_codes}")
            return
        self._connected.set()  # subscribed: from here on nothing a device sends is missed

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        if self._accepting:
            self.log(f"disconnected from the broker ({reason_code}); reconnecting")

    def _on_message(self, client, userdata, msg) -> None:
        if not self._accepting:
            return  # not acknowledged: the broker keeps it for the next session
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = "<invalid utf-8>"
        # The token: what acknowledges the message, and when it arrived (the disarm receipts' floor).
        self._queue.put(Message(topic, bytes(msg.payload), (self._generation, msg.mid, msg.qos, time.monotonic())))

    # Writer thread -------------------------------------------------------------------------
    def _run(self) -> None:
        next_expiry = time.monotonic() + self.expire_check_s
        while True:
            try:
                first = self._queue.get(timeout=0.05)
            except queue.Empty:
                if self._stop.is_set():
                    return
                if time.monotonic() >= next_expiry:
                    next_expiry = time.monotonic() + self.expire_check_s
                    self._guarded([self.ingest.expire], [])
                continue
            self._busy = True
            try:
                batch = [first]
                # An event (an alarm, say) does not wait for company: the batch is what is queued now.
                deadline = time.monotonic() + (0.0 if is_event(first) else self.batch_wait_s)
                while len(batch) < self.batch_max:
                    try:
                        left = deadline - time.monotonic()
                        batch.append(self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait())
                    except queue.Empty:
                        break
                self._guarded([lambda part=part: self.ingest.process_batch(part) for part in events_first(batch)],
                              batch)
            finally:
                self._busy = False

    def _publish(self, topic: str, payload: bytes) -> None:
        client = self._client
        if client is not None:
            client.publish(topic, payload, qos=1)

    def _guarded(self, works: list[Callable[[], BatchResult]], batch: list[Message]) -> None:
        """Run each part of one batch to its commit, in order, retrying a part while storage
        fails; then ack the whole batch (in the order received), then publish."""
        # The floor counts from the arrival of the batch's first message, before any queueing
        # behind an earlier batch, which a delivery that takes long to store would cause.
        began = min((m.token[3] for m in batch if isinstance(m.token, tuple) and len(m.token) > 3),
                    default=time.monotonic())
        result = BatchResult()
        t0 = time.perf_counter()
        for work in works:
            delay = 0.1
            while True:
                try:
                    part = work()
                    break
                except Exception as exc:
                    # Nothing of this part is stored, and nothing of the batch acknowledged. Ingest
                    # stops here until the storage works again (disk full, say): evidence is never
                    # dropped to go on.
                    self.log(f"INGEST STOPPED: could not commit a batch of {len(batch)} messages: "
                             f"{type(exc).__name__}: {exc}; retrying in {delay:.1f} s. Check the disk, "
                             f"the database at {self.data_dir} and the blob store")
                    if self._stop.wait(delay):
                        return  # stopping: unacknowledged, the broker delivers it again next session
                    delay = min(delay * 2, 5.0)
            result.outbound += part.outbound
            result.stored += part.stored
            for reason, n in part.rejected.items():
                result.rejected[reason] = result.rejected.get(reason, 0) + n
        commit_ms = (time.perf_counter() - t0) * 1000
        client = self._client
        for msg in batch:
            generation, mid, qos = msg.token[:3]
            if qos and generation == self._generation and client is not None:
                client.ack(mid, qos)
        floor = began + self.disarm_receipt_floor_s
        for out in result.outbound:
            if out.disarm_shaped:
                self.held.hold(out.topic, out.payload, floor - time.monotonic())
            elif client is not None:
                client.publish(out.topic, out.payload, qos=1)
        stamp = int(self.clock() * 1000)
        try:
            self.store.captures.mark_stored([s.rowid for s in result.stored], stamp)
        except Exception as exc:  # bookkeeping only: the batch is durable and acknowledged already
            self.log(f"could not stamp {len(result.stored)} stored captures with their time: "
                     f"{type(exc).__name__}: {exc}")
        s = self.stats
        s["batches"] += 1 if batch else 0
        s["messages"] += len(batch)
        s["max_batch"] = max(s["max_batch"], len(batch))
        s["stored"] += len(result.stored)
        s["rejected"] += sum(result.rejected.values())
        s["commit_ms_total"] += commit_ms
        self.metrics.record_batch(len(batch), commit_ms / 1000, result.rejected,
                                  [(stamp - c.first_chunk_ms) / 1000 for c in result.stored])
        for c in result.stored:
            self.log(f"stored capture {c.capture_id[:8]} from {c.device}: {c.frames} frames, "
                     f"{c.trigger}, {c.size} bytes, alarm {c.alarm_id[:8]}, "
                     f"{stamp - c.first_chunk_ms} ms after its first chunk")
