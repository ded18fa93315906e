#!/usr/bin/env python3
"""Draws what the broker saw of each disarm in a `vericam bench wire-privacy` run: one row per disarm, normal above, duress below.

    python tools/draw_wire.py RESULT.json WIRE.jsonl OUT.svg [--first N]

RESULT.json is the benchmark's `--out` file (its episodes say which disarm was which kind,
something the broker does not know), WIRE.jsonl its `--wire-log`. Each row is one disarm's
window as a watcher at the broker cuts it: time runs from the disarm event on the wire
(the first `up/event` after the door opened, the one thing a watcher can align on), every
message is a mark at its time, coloured by topic, its height growing with the log of its
size. Rows are the first N disarms of each kind (default 10). If the two halves look alike,
the wire does not tell a duress disarm; the benchmark's figures say how alike.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

BEFORE_S, AFTER_S = 30.0, 390.0  # seconds drawn around the disarm event
COLOURS = {"event": "#d62728", "capture": "#1f77b4", "receipt": "#2ca02c", "heartbeat": "#7f7f7f",
           "status": "#9467bd", "time": "#ff7f0e"}
ROW_H, LEFT, TOP, WIDTH = 16, 90, 46, 900


def rows_of(result: dict, records: list[dict], kind: str, first: int) -> list[tuple[float, list[dict]]]:
    """(disarm event's time, messages around it) for the first `first` scored disarms of `kind`."""
    out = []
    window = result.get("window_s", 420.0)
    for e in result["episodes"]:
        if e["kind"] != kind or "failed" in e:
            continue
        mine = [r for r in records if e["t_open"] <= r["t"] < e["t_open"] + window]
        events = [r["t"] for r in mine if r["topic"].endswith("/up/event")]
        if not events:
            continue
        t0 = events[0]
        out.append((t0, [r for r in records if t0 - BEFORE_S <= r["t"] < t0 + AFTER_S]))
        if len(out) == first:
            break
    return out


def svg(result: dict, records: list[dict], first: int = 10) -> str:
    """The drawing, as SVG text."""
    scale = WIDTH / (BEFORE_S + AFTER_S)
    x = lambda t: LEFT + (t + BEFORE_S) * scale  # noqa: E731
    parts, y = [], TOP
    for kind in ("normal", "duress"):
        rows = rows_of(result, records, kind, first)
        parts.append(f'<text x="8" y="{y + ROW_H * len(rows) / 2 + 4:.0f}" class="k">{kind}</text>')
        for t0, msgs in rows:
            parts.append(f'<line x1="{LEFT}" x2="{LEFT + WIDTH}" y1="{y + ROW_H - 2}" y2="{y + ROW_H - 2}" class="base"/>')
            for m in msgs:
                leaf = m["topic"].rsplit("/", 1)[-1]
                h = min(ROW_H - 3, 1.5 * math.log2(max(2, m["bytes"])) * (ROW_H - 3) / 20)
                parts.append(f'<line x1="{x(m["t"] - t0):.1f}" x2="{x(m["t"] - t0):.1f}" y1="{y + ROW_H - 2}" '
                             f'y2="{y + ROW_H - 2 - h:.1f}" stroke="{COLOURS.get(leaf, "#000")}"/>')
            y += ROW_H
        y += ROW_H
    axis = [f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{TOP - 6}" y2="{y - ROW_H}" class="zero"/>']
    for s in range(0, int(AFTER_S) + 1, 60):
        axis.append(f'<text x="{x(s):.1f}" y="{y + 4}" class="t">{s} s</text>')
    legend = [f'<text x="{LEFT}" y="18" class="h">What the broker sees of each disarm: seconds after the disarm '
              f'event, one mark per message (height: log of its size)</text>']
    lx = LEFT
    for leaf, colour in COLOURS.items():
        legend.append(f'<rect x="{lx}" y="27" width="10" height="10" fill="{colour}"/>'
                      f'<text x="{lx + 14}" y="36" class="t0">{leaf}</text>')
        lx += 100
    note = (f'{result["runs_by_kind"]["normal"]} + {result["runs_by_kind"]["duress"]} disarms, seed '
            f'{result["seed"]}; classifier_accuracy {result.get("classifier_accuracy")} '
            f'(shuffled labels {result.get("shuffled_labels_accuracy")})')
    height = y + 30
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{LEFT + WIDTH + 20}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        '<style>.base{stroke:#ddd}.zero{stroke:#bbb;stroke-dasharray:3 3}.k{font-weight:bold}'
        '.t{text-anchor:middle;fill:#444}.t0{fill:#444}.h{font-size:13px}</style>',
        '<rect width="100%" height="100%" fill="#fff"/>',
        *legend, *axis, *parts,
        f'<text x="{LEFT}" y="{height - 6}" class="t0">{note}</text>',
        "</svg>", ""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("result", type=Path)
    ap.add_argument("wire", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--first", type=int, default=10, help="disarms of each kind to draw")
    args = ap.parse_args(argv)
    try:
        result = json.loads(args.result.read_text())
        records = [json.loads(line) for line in args.wire.read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        print(f"draw_wire: cannot read the run: {exc}", file=sys.stderr)
        return 2
    args.out.write_text(svg(result, records, args.first))
    return 0


if __name__ == "__main__":
    sys.exit(main())
