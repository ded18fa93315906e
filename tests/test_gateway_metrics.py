"""Prometheus metrics of a running gateway: what it ingested, what it rejected and why, its backlog."""

import os
import urllib.request

from gateway.protocol import envelope as env
from gateway.provisioning.devices import add_device, init_arc
from gateway.ingest.service import Gateway
from simulator.fake_device import FakeDevice

from support.link import DeviceLink


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        return r.read().decode()


def value(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in metrics:\n{text}")


def test_metrics_count_stored_captures_rejections_by_reason_and_latency(tmp_path, broker):
    data = tmp_path / "gw"
    init_arc(data)
    dev = FakeDevice(add_device(data, "cam-1", "site"))
    with Gateway(data, broker.host, broker.port, metrics_port=0, log=lambda line: None) as gw:
        port = gw._metrics_server.port
        before = scrape(port)
        assert value(before, "vericam_captures_stored_total") == 0
        assert value(before, "vericam_retention_backlog_images") == 0
        link = DeviceLink(broker, dev)
        try:
            cid, sealed = dev.seal([b"\xff\xd8" + os.urandom(4000) + b"\xff\xd9"])
            link.send(dev.chunk_messages(cid, sealed, os.urandom(8)))
            assert link.next_downlink()[1] == env.RECEIPT_STORED
            link.send([("vc/v1/cam-1/up/capture", b"garbage")])
            gw.wait_idle()
        finally:
            link.close()
        after = scrape(port)
    assert value(after, "vericam_captures_stored_total") == 1
    assert value(after, 'vericam_rejected_total{reason="malformed"}') == 1
    assert value(after, "vericam_ingest_latency_seconds_count") == 1
    assert value(after, "vericam_queue_depth") == 0
    assert "garbage" not in after
