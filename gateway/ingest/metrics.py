"""Prometheus metrics of the gateway: ingest latency, queue depth, retention backlog, rejections by reason.

No client library: the text exposition format (version 0.0.4) is a few lines, and the
gateway needs only counters, gauges and two histograms. `MetricsServer` serves them on
`/metrics` from a small thread; it binds to 127.0.0.1 unless told otherwise, because the
figures are for the ARC's own monitoring, not for the world.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

# Seconds. Alarm photos should be durable well within a second of their last chunk.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Histogram:
    def __init__(self, buckets=LATENCY_BUCKETS):
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.total += 1
        self.sum += value
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1


class Metrics:
    """The gateway's figures; updated by the writer thread, read by the HTTP thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self.messages = 0
        self.batches = 0
        self.captures_stored = 0
        self.rejected: dict[str, int] = {}
        self.ingest_latency = Histogram()   # first chunk received -> capture durable
        self.commit_seconds = Histogram()   # one group commit
        self.gauges: dict[str, Callable[[], float]] = {}
        self.sources: list[Callable[[], list[str]]] = []  # more exposition lines (DC-09 forwarding)

    def record_batch(self, messages: int, commit_s: float, rejected: dict[str, int],
                     stored_latencies_s: list[float]) -> None:
        with self._lock:
            self.batches += 1
            self.messages += messages
            self.commit_seconds.observe(commit_s)
            for reason, n in rejected.items():
                self.rejected[reason] = self.rejected.get(reason, 0) + n
            for latency in stored_latencies_s:
                self.captures_stored += 1
                self.ingest_latency.observe(latency)

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        self.gauges[name] = read

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP vericam_messages_total MQTT messages taken from the broker.",
                "# TYPE vericam_messages_total counter",
                f"vericam_messages_total {self.messages}",
                "# HELP vericam_batches_total Group commits.",
                "# TYPE vericam_batches_total counter",
                f"vericam_batches_total {self.batches}",
                "# HELP vericam_captures_stored_total Captures made durable and receipted.",
                "# TYPE vericam_captures_stored_total counter",
                f"vericam_captures_stored_total {self.captures_stored}",
                "# HELP vericam_rejected_total Messages rejected, by reason.",
                "# TYPE vericam_rejected_total counter",
            ]
            for reason in sorted(self.rejected):
                lines.append(f'vericam_rejected_total{{reason="{reason}"}} {self.rejected[reason]}')
            lines += _histogram("vericam_ingest_latency_seconds",
                                "From a capture's first chunk to the capture durable.", self.ingest_latency)
            lines += _histogram("vericam_commit_seconds", "Duration of one group commit.", self.commit_seconds)
        for name, read in sorted(self.gauges.items()):
            try:
                value = float(read())
            except Exception:
                continue  # a gauge that cannot be read right now is left out, not faked
            lines += [f"# TYPE {name} gauge", f"{name} {value:g}"]
        for source in self.sources:
            try:
                lines += source()
            except Exception:
                continue
        return "\n".join(lines) + "\n"


def _histogram(name: str, help_text: str, h: Histogram) -> list[str]:
    out = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for bound, count in zip(h.buckets, h.counts):
        out.append(f'{name}_bucket{{le="{bound:g}"}} {count}')
    out += [f'{name}_bucket{{le="+Inf"}} {h.total}', f"{name}_sum {h.sum:.6f}", f"{name}_count {h.total}"]
    return out


class MetricsServer:
    """Serves `metrics.render()` at /metrics on a background thread."""

    def __init__(self, metrics: Metrics, port: int, host: str = "127.0.0.1"):
        m = metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "only /metrics is served here")
                    return
                body = m.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass  # scrapes are not worth a log line each

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="vericam-metrics", daemon=True)

    def start(self) -> "MetricsServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
