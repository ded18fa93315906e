"""Commands of the simulator: `vericam demo`, `vericam sim ...` and `vericam bench ...`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

sim_app = typer.Typer(help="Play scenarios on simulated hardware around the real firmware.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print their figures against a baseline measured in the same run.",
                        no_args_is_help=True)

DEFAULT_WORKDIR = Path("var") / "demo"


def _verdict(console: Console, result: dict, json_out: bool) -> None:
    """Passed or failed, the JSON last line with --json, and exit 1 on failure."""
    console.print("[green]passed[/]" if result["passed"] else "[red]failed[/]")
    if json_out:
        print(json.dumps(result))
    if not result["passed"]:
        raise typer.Exit(1)


def _emit(result: dict, out: Path | None, json_out: bool) -> None:
    """A benchmark's figures: to a file for tools with --out, as the last line with --json."""
    text = json.dumps(result)
    if out:
        out.write_text(text + "\n")
    if json_out:
        print(text)


DC09_OPT = typer.Option(None, "--dc09", metavar="HOST:PORT[,HOST:PORT]",
                        help="Also forward the alarms to these SIA DC-09 alarm receivers (primary, then backups), "
                        "as `vericam gateway run --dc09` does: the alarm at once, a follow-up with the console "
                        "link when its photos are stored.")
DC09_KEY_FILE_OPT = typer.Option(None, "--dc09-key-file", help="The receivers' AES keys, mode 0600: `ACCOUNT KEY` "
                                 "lines, or `KEY` alone for every account; KEY is hex, or ascii:CHARACTERS as "
                                 "pysiaalarm takes it. Without it the messages go unencrypted.")
DC09_FORMAT_OPT = typer.Option("SIA-DCS", "--dc09-format", help="SIA-DCS or ADM-CID (Contact ID).")
DC09_ACCOUNT_OPT = typer.Option("1234", "--dc09-account", help="The account the simulated panel reports under at "
                                "the receiver (hex; a further device gets the next number).")
DC09_CONSOLE_OPT = typer.Option("http://127.0.0.1:8080", "--dc09-console-url", metavar="URL",
                                help="The console address in the reports' verification link (default: where "
                                "`vericam gateway console` serves).")


def _dc09_settings(receivers: str | None, key_file: Path | None, fmt: str, console_url: str):
    """The --dc09 options as gateway settings (None without --dc09); exits 2 on a bad one."""
    if receivers is None:
        if key_file is not None:
            _fail("--dc09-key-file needs --dc09 HOST:PORT")
        return None
    from gateway.forward.config import ConfigError, Settings

    settings = Settings(receivers, str(key_file.resolve()) if key_file else None, fmt, console_url=console_url,
                        backoff_max_s=5.0)
    try:
        settings.build_route()
    except (ConfigError, ValueError) as exc:
        _fail(str(exc))
    return settings


def _print_dc09(console: Console, reports: list[dict]) -> None:
    for r in reports:
        what = f"{r['event']}{' follow-up (photos stored)' if r['follow_up'] else ''}"
        acked = f"ACKed by the {r['acked_by']} receiver" if r["acked_by"] else "[red]not acknowledged yet[/] (kept)"
        console.print(f"DC-09 seq {r['seq']:04d} account {r['account']} zone {r['zone']:03d}: {what}: {acked}")


def demo(
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary as the last line."),
    workdir: Path = typer.Option(DEFAULT_WORKDIR, help="Where the broker, gateway and device keep their files."),
    dc09: str = DC09_OPT, dc09_key_file: Path = DC09_KEY_FILE_OPT, dc09_format: str = DC09_FORMAT_OPT,
    dc09_account: str = DC09_ACCOUNT_OPT, dc09_console_url: str = DC09_CONSOLE_OPT,
) -> None:
    """Play a burglary end to end: Mosquitto, the gateway and one device on real MicroPython.

    The panel is armed, the door zone opens, nobody disarms: the intrusion alarm makes the
    device capture 3 photos, seal them, and send them to the gateway, which stores them and
    sends the receipt that lets the device delete its sealed copy. With --dc09 the gateway
    also reports the alarm to that SIA DC-09 receiver, and then that its photos are there.
    """
    from simulator.demo import run_demo

    dc09_settings = _dc09_settings(dc09, dc09_key_file, dc09_format, dc09_console_url)
    console = Console(stderr=json_out)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)

    def echo(t, source, text):
        console.print(f"[cyan]{t:7.3f}[/] [magenta]{source:>8}[/]  {text}")

    console.rule("Vericam demo: burglary")
    try:
        result, stack = run_demo(workdir, keep=True, echo=echo, dc09=dc09_settings, dc09_account=dc09_account)
    except Exception as exc:
        console.print(f"[red]demo failed:[/] {exc}")
        raise typer.Exit(1)
    photos = workdir / "arc-photos"
    photos.mkdir(exist_ok=True)
    from gateway.storage.store import Store
    with Store.open(stack.gateway_dir) as s:
        for row in s.images.list():
            (photos / f"{row['device']}-{row['capture_id'][:8]}-{row['frame_index']}.jpg").write_bytes(
                s.images.read(row["id"]))
    console.rule("Result")
    console.print(f"photos stored at the ARC:   {result['images_at_arc']} "
                  f"({result['images_identical']} byte-identical to what the camera took)")
    console.print(f"alarm to last photo stored: {result['alarm_to_stored_ms']:.0f} ms")
    console.print(f"captures left on device:    {result['device_captures_left']}")
    if "dc09" in result:
        _print_dc09(console, result["dc09"])
    console.print(f"gateway data (encrypted):   {stack.gateway_dir}")
    console.print(f"photos, decrypted for you:  {photos}/  (demo only)")
    console.print("see them as an ARC operator would (every read is audited under her name):")
    console.print(f"  .venv/bin/vericam users add olivia --role operator --data {stack.gateway_dir}")
    console.print(f"  .venv/bin/vericam gateway images --by olivia --data {stack.gateway_dir}")
    console.print(f"  .venv/bin/vericam gateway console --data {stack.gateway_dir} --http-cookies"
                  "   # then open http://127.0.0.1:8080/")
    ok = result["images_at_arc"] == 3 and result["device_captures_left"] == 0 and result["images_identical"] == 3
    if json_out:
        print(json.dumps(result))
    if not ok:
        raise typer.Exit(1)


@bench_app.command("e2e")
def bench_e2e(
    runs: int = typer.Option(20, "--runs", "-n", min=1, max=500, help="Burglaries to play."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON on the last line."),
    out: Path = typer.Option(None, "--out", help="Also write the JSON to this file."),
) -> None:
    """Alarm-to-stored latency (p50/p95) of N burglaries, against raw MQTT in the same run.

    The baseline is the raw MQTT round trip of the same bytes, in the same chunks and window,
    over the same broker, measured between the burglaries."""
    from rich.progress import Progress

    from simulator.bench.e2e import run_e2e

    console = Console(stderr=True)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("burglaries", total=runs)
        result = run_e2e(runs, progress=lambda done, total: progress.update(task, completed=done))
    a, b = result["alarm_to_stored_ms"], result["raw_mqtt_round_trip_ms"]
    console.print(f"alarm -> stored   p50 {a['p50']:8.1f} ms   p95 {a['p95']:8.1f} ms")
    console.print(f"raw MQTT baseline p50 {b['p50']:8.1f} ms   p95 {b['p95']:8.1f} ms   "
                  f"({result['sealed_capture_bytes_p50']} bytes per alarm)")
    console.print(f"ratio             p50 {result['ratio_p50']:8.2f}      p95 {result['ratio_p95']:8.2f}")
    st = result["stages_p50_ms"]
    console.print(f"stages (p50)      alarm -> sealed {st['alarm_to_sealed']:.1f} ms, sealed -> stored "
                  f"{st['sealed_to_stored']:.1f} ms ({result['ratio_sealed_to_stored_p50']:.2f} x baseline)")
    _emit(result, out, json_out)


@sim_app.command("list")
def sim_list(json_out: bool = typer.Option(False, "--json", help="Print the list as JSON: name, description, "
                                           "path, time_scale, steps (and error for a file that does not load).")
             ) -> None:
    """List the scenarios in simulator/scenarios/: name, description and time scale."""
    from simulator.scenario import list_scenarios

    items = list_scenarios()
    if json_out:
        print(json.dumps(items))
        return
    console = Console()
    width = max((len(item["name"]) for item in items), default=0) + 2
    for item in items:
        if "error" in item:
            console.print(f"[bold]{escape(item['name']):<{width}}[/] [red]does not load:[/] {escape(item['error'])}")
            continue
        scale = f" [dim](x{item['time_scale']})[/]" if item["time_scale"] != 1 else ""
        console.print(f"[bold]{escape(item['name']):<{width}}[/]{escape(item['description'])}{scale}")


@sim_app.command("run")
def sim_run(
    scenario: str = typer.Argument(..., help="A scenario name (see `vericam sim list`) or a TOML file."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON on the last line of "
                                  "stdout (the timeline goes to stderr)."),
    flash: Path = typer.Option(None, "--flash", help="Keep the device's raw flash image at this path."),
    workdir: Path = typer.Option(None, help="Keep the run's files here (default: a temporary directory)."),
    time_scale: int = typer.Option(None, "--time-scale", min=1, max=600,
                                   help="Play N x faster than real time (default: the scenario's "
                                   "time_scale, else 1); the device keeps its configuration."),
    wire_log: Path = typer.Option(None, "--wire-log", help="Write every MQTT message the broker carried, "
                                  "as the broker's read-only observer account saw it, to this file as JSON "
                                  'lines {"t", "topic", "bytes", "qos", "retain"} (t: scenario seconds since the start).'),
    dc09: str = DC09_OPT, dc09_key_file: Path = DC09_KEY_FILE_OPT, dc09_format: str = DC09_FORMAT_OPT,
    dc09_account: str = DC09_ACCOUNT_OPT, dc09_console_url: str = DC09_CONSOLE_OPT,
) -> None:
    """Play one scenario on the real firmware, broker and gateway; print its timeline and outcome.

    Exit 0 when every expectation holds, 1 when one fails, 2 when the scenario file is wrong
    (the message names the file, the step and the key). How to write one: docs/SIMULATOR.md.
    """
    from simulator.scenario import ScenarioError, find, run
    from simulator.timeline import Timeline, clock_text

    dc09_settings = _dc09_settings(dc09, dc09_key_file, dc09_format, dc09_console_url)
    console = Console(stderr=json_out)
    try:
        path = find(scenario)
        console.rule(f"scenario {path.stem}")
        with console.status("starting the broker, the gateway and the device...") as status:
            # While it plays, the status line shows the latest entry; the whole timeline
            # follows as a table.
            timeline = Timeline(echo=lambda t, source, text: status.update(f"{clock_text(t)} {source}: {text}"))
            result = run(path, workdir, flash, timeline=timeline, time_scale=time_scale, wire_log=wire_log,
                         dc09=dc09_settings, dc09_account=dc09_account)
    except ScenarioError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2)
    timeline.render(console, title=f"timeline of {path.stem}")
    console.rule("outcome")
    for key in ("images_captured", "images_at_arc", "image_bytes_sent_without_alarm",
                "device_captures_left", "captures_recoverable_with_arc_key", "duplicates_stored", "alarms",
                "technical", "shred_late_s", "wire_messages"):
        console.print(f"{key:<34} {result.get(key)}")
    if "dc09" in result:
        _print_dc09(console, result["dc09"])
    if result["time_scale"] != 1:
        console.print(f"{'time':<32} {result['scenario_s']:.1f} s of scenario time in {result['real_s']:.1f} s "
                      f"(x{result['time_scale']})")
    for failure in result["failures"]:
        console.print(f"[red]FAILED[/] {escape(failure)}")
    _verdict(console, result, json_out)


@sim_app.command("fleet")
def sim_fleet(
    devices: int = typer.Option(10, "--devices", "-n", min=1, max=2000, help="Devices, each a MicroPython process."),
    duration: float = typer.Option(60.0, "--duration", min=1.0, help="Seconds of daily life to play."),
    seed: int = typer.Option(1, "--seed", help="Seed of the households' random daily life."),
    gap: float = typer.Option(5.0, "--gap", min=0.5, help="Mean idle seconds between a household's episodes."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON on the last line."),
    workdir: Path = typer.Option(None, help="Keep the run's files here (default: a temporary directory)."),
) -> None:
    """N devices against one broker and one gateway, with randomised daily life (arm/disarm by
    random users, intrusions, smoke tests); reports supervision, photos lost and memory per device.
    Exits 1 when a photo is lost or doubled, or a device is not supervised."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from simulator.fleet import run_fleet

    console = Console(stderr=json_out)
    with Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        tasks = {"booted": progress.add_task("devices booted", total=devices),
                 "events": progress.add_task("events played", total=None),
                 "photos_at_arc": progress.add_task("photos at ARC", total=None)}

        def report(what, done, total):
            progress.update(tasks[what], completed=done, total=total or None)

        result = run_fleet(devices, duration, seed=seed, workdir=workdir, gap_s=(gap * 0.4, gap * 1.6),
                           progress=report)
    rss = result["rss_mb_per_device"]
    lat = result["alarm_to_stored_ms"]
    console.print(f"devices {result['devices']}, supervised ok {result['devices_supervised_ok']}; "
                  f"alarms {result['alarms']} (at ARC {result['alarms_at_arc']})")
    console.print(f"photos captured {result['images_captured']} ({result['images_captured_for_alarms']} for alarms), "
                  f"at ARC {result['images_at_arc']}, lost {result['images_lost']}, "
                  f"duplicates {result['duplicates_stored']}")
    console.print(f"alarm -> stored p50 {lat.get('p50')} ms, p95 {lat.get('p95')} ms; RSS per device mean "
                  f"{rss['mean']} MB, max {rss['max']} MB; host CPU busy {result['host']['cpu_busy_pct']} %")
    _verdict(console, result, json_out)


@bench_app.command("dc09")
def bench_dc09(
    alarms: int = typer.Option(10, "--alarms", "-n", min=1, max=500, help="Intrusion alarms to play."),
    workdir: Path = typer.Option(None, help="Keep the run's files here (default: a temporary directory)."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON on the last line."),
    out: Path = typer.Option(None, "--out", help="Also write the JSON to this file."),
) -> None:
    """Panel alarm to the ARC receiver's ACK over SIA DC-09 (p50/p95), against a bare DC-09 message.

    Full stack (Mosquitto, the gateway with --dc09, the device on real MicroPython) and
    pysiaalarm as the ARC's receiver, encrypted. The baseline is one bare DC-09 message to the
    same receiver, measured between the alarms; the device's MQTT hop (panel event to the
    broker delivering the alarm's message) is reported apart."""
    from rich.progress import Progress

    from simulator.bench.dc09 import run_dc09

    console = Console(stderr=True)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("alarms", total=alarms)
        result = run_dc09(alarms, workdir=workdir, progress=lambda done, total: progress.update(task, completed=done))
    a, h, g = result["alarm_to_ack_ms"], result["mqtt_hop_ms"], result["gateway_to_ack_ms"]
    s, e = result["alarm_to_event_stored_ms"], result["event_stored_to_ack_ms"]
    console.print(f"alarms {result['alarms']}, ACKed {result['acked']}, lost {result['lost']}, "
                  f"duplicates at the receiver {result['duplicates_at_receiver']}; "
                  f"{result['acked_before_photos_stored']} ACKed before their photos were stored")
    console.print(f"alarm -> receiver ACK   p50 {a['p50']} ms   p95 {a['p95']} ms")
    console.print(f"  alarm -> broker delivers it  p50 {h['p50']} ms   p95 {h['p95']} ms   (the device's MQTT hop)")
    console.print(f"  delivered -> ACK             p50 {g['p50']} ms   p95 {g['p95']} ms   (the gateway and DC-09)")
    console.print(f"  alarm -> event stored       p50 {s['p50']} ms   p95 {s['p95']} ms; "
                  f"stored -> ACK p50 {e['p50']} ms   p95 {e['p95']} ms")
    console.print(f"bare DC-09 baseline     p50 {result['baseline_ms']} ms   p95 {result['baseline_ms_p95']} ms; "
                  f"goal p95 <= 2 x baseline + hop = {result['goal_ms']} ms: "
                  f"{'met' if result['within_goal'] else 'NOT met'}")
    _emit(result, out, json_out)


@bench_app.command("uplink")
def bench_uplink(
    runs: int = typer.Option(5, "--runs", "-n", min=1, max=100, help="Alarms per link profile."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON on the last line."),
    out: Path = typer.Option(None, "--out", help="Also write the JSON to this file."),
) -> None:
    """Delivery of a 3-photo alarm over shaped links, against the link's physical minimum.

    Links: 1 Mbit/s + 100 ms RTT and 256 kbit/s + 300 ms RTT, through the simulator's proxy;
    delivery is alarm -> receipt at the device."""
    from rich.progress import Progress

    from simulator.bench.uplink import run_uplink

    console = Console(stderr=True)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("alarms", total=runs * 2)
        result = run_uplink(runs, progress=lambda done, total: progress.update(task, completed=done))
    for link in result["links"]:
        console.print(f"[bold]{link['link']:<14}[/] delivery p50 {link['delivery_ms']['p50']:8.0f} ms   "
                      f"minimum {link['minimum_ms_p50']:8.0f} ms   ratio p50 {link['ratio_p50']:.2f} "
                      f"(max {link['ratio_max']:.2f}, goal <= {result['goal_ratio']})")
        st = link["stages_p50_ms"]
        console.print(f"{'':<14} alarm -> sealed {st['alarm_to_sealed']:.0f} ms, sealed -> receipt "
                      f"{st['sealed_to_receipt']:.0f} ms; overhead {link['overhead_bytes_per_photo_p50']} "
                      f"bytes/photo, {link['overhead_round_trips_p50']:.1f} round trips")
    _emit(result, out, json_out)


@bench_app.command("wire-privacy")
def bench_wire_privacy(
    runs: int = typer.Option(20, "--runs", "-n", min=1, max=500, help="Disarms of each kind (normal, duress)."),
    seed: int = typer.Option(1, "--seed", help="Seed of the order of the episodes and of their timing."),
    wire_log: Path = typer.Option(None, "--wire-log", help="Also write the whole wire log (JSON lines) here."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON on the last line."),
    out: Path = typer.Option(None, "--out", help="Also write the JSON to this file."),
    hold_window: float = typer.Option(300.0, "--hold-window", min=10.0, max=3600.0,
                                      help="The device's hold window in scenario seconds; each disarm's "
                                           "window is it + 120 s. Shorter is quicker, for checking the "
                                           "benchmark itself; the figures that count use the default."),
) -> None:
    """Can a watcher at the broker tell a duress disarm from a normal one?

    Plays N normal and N duress disarms in random order (real firmware on MicroPython, real
    Mosquitto, the gateway; 60 x scaled time), logs the wire with the broker's observer
    account, and scores simple classifiers on each disarm's sizes, counts and timing.
    classifier_accuracy is the best simple classifier by nested cross-validation (chosen,
    with its features, without seeing the disarms it is scored on): 0.5 is chance, issue
    13's goal is at most 0.6; read it against shuffled_labels_accuracy, the same procedure
    on shuffled labels in the same run. Also reports cover_bytes_per_disarm."""
    from rich.progress import Progress

    from simulator.bench.wire_privacy import run_wire_privacy

    console = Console(stderr=True)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("disarms", total=runs * 2)
        result = run_wire_privacy(runs, seed=seed, wire_log=wire_log, hold_window_s=hold_window,
                                  progress=lambda done, total: progress.update(task, completed=done))
    acc = result["classifier_accuracy"]
    console.print(f"disarms scored      {result['runs_scored']} of {result['runs']} "
                  f"({result['runs_by_kind']['normal']} normal, {result['runs_by_kind']['duress']} duress)")
    if acc is None:
        console.print("[red]too few disarms of a kind were scored to cross-validate (3 of each needed)[/]")
    else:
        console.print(f"classifier accuracy {acc:.3f} (nested cross-validation, most chosen "
                      f"{result['best_classifier']}; chance 0.5, goal <= {result['goal_at_most']}; "
                      f"shuffled-label baseline {result['shuffled_labels_accuracy']:.3f})")
        console.print("  each classifier alone: " + ", ".join(f"{k} {v:.3f}" for k, v in result["classifiers"].items()))
        console.print(f"  best of them {result['best_single_classifier_accuracy']:.3f} (optimistic; shuffled "
                      f"labels {result['shuffled_labels_best_single_accuracy']:.3f})")
        top = list(result["per_feature_threshold"].items())[:5]
        console.print("  most telling features: " + ", ".join(f"{k} {v:.3f}" for k, v in top))
    b = result["device_bytes_per_disarm"]
    console.print(f"device bytes/disarm normal {b['normal']}, duress {b['duress']}; "
                  f"cover bytes/disarm {result['cover_bytes_per_disarm']}")
    _emit(result, out, json_out)


@bench_app.command("device")
def bench_device(
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON on the last line."),
    out: Path = typer.Option(None, "--out", help="Also write the JSON to this file."),
) -> None:
    """The device's heap on real MicroPython: smallest heap for the burglary, peak while sealing.

    The smallest -X heapsize at which the burglary scenario passes (firmware as source and
    precompiled by mpy-cross), and the peak gc.mem_alloc() while 3 x 60 KB frames are
    captured and sealed to flash."""
    from simulator.bench.device import run_bench

    console = Console(stderr=True)

    def progress(kind, heap, ok, secs):
        console.print(f"  burglary at -X heapsize={heap:>7} ({kind:>6}): {'passes' if ok else 'fails'} ({secs:.1f} s)")

    result = run_bench(progress=progress)
    mh, sp = result["min_heap_burglary"], result["seal_peak"]
    kb = lambda n: "n/a" if n is None else f"{n / 1024:.0f} KiB"  # noqa: E731
    console.print(f"smallest heap for the burglary   source {kb(mh['source'])}   mpy {kb(mh['mpy'])}   "
                  f"(goal {kb(result['goal_bytes'])} of data heap on an ESP32)")
    console.print(f"firmware code held in the heap   {kb(result['code_heap'])} (frozen into flash on a board)")
    bl = result["burglary_live"]
    console.print(f"agent data in a burglary         at rest {kb(bl['at_rest_less_code'])}, peak "
                  f"{kb(bl['peak_less_code'])} (live heap less code, sampled every 10 ms after a collect)")
    console.print(f"seal 3 x 60 KB: live peak {kb(sp['live_peak_mem_alloc'])}, working set "
                  f"{sp['live_working_set']} bytes; raw peak {kb(sp['raw_peak_mem_alloc'])} of a "
                  f"{kb(sp['raw_heap_total'])} heap (garbage included)")
    ks = result["key_slots"]
    console.print(f"key slots ({ks['slots']})                   code {ks['code_heap']} bytes (mpy "
                  f"{ks['code_heap_mpy']}), kept {ks['state_heap']} bytes, a claim {ks['claim_bytes']}, "
                  f"a key read {ks['key_read_bytes']} (included in the figures above)")
    _emit(result, out, json_out)


@bench_app.command("ingest")
def bench_ingest(
    captures: int = typer.Option(300, "--captures", "-n", min=10, max=20000, help="Captures of one ~40 KB frame."),
    devices: int = typer.Option(100, "--devices", min=1, max=1000,
                                help="Provisioned devices sending them, taking turns (a device sends one capture at a time)."),
    workers: str = typer.Option("1,2", "--workers", help="Gateway worker counts to measure, e.g. 1,2."),
    db: str = typer.Option(None, "--db", help="Metadata in PostgreSQL: postgresql://USER@HOST:PORT/DBNAME of a "
                           "role that may create databases; each run gets a scratch database, dropped after it. "
                           "The password goes in ~/.pgpass or PGPASSWORD. Default: SQLite."),
    blobs: str = typer.Option(None, "--blobs", help="Images in S3: s3://BUCKET/PREFIX of an existing bucket; each "
                              "run writes under a prefix of its own and deletes it. Default: files."),
    s3_endpoint: str = typer.Option(None, "--s3-endpoint", help="The S3 store's URL (leave out for AWS)."),
    json_out: bool = typer.Option(False, "--json", help="Print the figures as JSON on the last line."),
    out: Path = typer.Option(None, "--out", help="Also write the JSON to this file."),
) -> None:
    """Durable images/s of the gateway against raw MQTT throughput of the same payloads,
    on SQLite and files, or with --db and/or --blobs on PostgreSQL and S3."""
    from gateway.storage.blobstore import BlobStoreError
    from gateway.storage.sqldb import DatabaseError
    from simulator.bench.ingest import run_ingest

    console = Console(stderr=True)
    counts = tuple(int(w) for w in workers.split(",") if w.strip())
    try:
        with console.status("publishing and ingesting..."):
            result = run_ingest(captures, devices, counts, db=db, blobs=blobs, s3_endpoint=s3_endpoint)
    except (DatabaseError, BlobStoreError) as exc:
        console.print(f"bench ingest: {exc}")
        raise typer.Exit(2) from None
    console.print(f"storage   {result['storage']}")
    b = result["baseline"]
    console.print(f"baseline  raw MQTT       {b['images_per_s']:8.1f} images/s  ({b['messages_per_s']:.0f} msg/s)")
    for r in result["runs"]:
        lat = r["broker_to_durable_ms"]
        console.print(f"gateway   {r['workers']} worker(s)    {r['images_per_s']:8.1f} images/s  "
                      f"ratio {r['ratio_to_baseline']:.2f}  p50 {lat['p50']:.0f} ms  p99 {lat['p99']:.0f} ms  "
                      f"lost {r['lost']}  duplicates {r['duplicates']}  rejected {sum(r['rejected'].values())}")
    if "scaling_2_vs_1" in result:
        console.print(f"2 workers vs 1: {result['scaling_2_vs_1']:.2f}x")
    _emit(result, out, json_out)


@bench_app.command("fuzz")
def bench_fuzz(
    seconds: float = typer.Option(60.0, "--seconds", min=1, help="How long to fuzz, all targets round-robin."),
    seed: int = typer.Option(None, "--seed", help="RNG seed (printed; default random), to repeat a run."),
    target: list[str] = typer.Option(None, "--target", help="Only these targets (envelope, chunk, sealed, "
                                     "reassembler, scenario, retention); repeatable."),
    json_out: bool = typer.Option(False, "--json", help="Print the counts as JSON on the last line."),
) -> None:
    """Mutation fuzz of everything that reads hostile input (envelope parser, chunk parser,
    sealed-capture opener, reassembler, scenario and retention loaders) for --seconds.
    Prints inputs tried and outcomes per target; exits 1 if any target crashed."""
    from simulator.bench.fuzz import run as run_fuzz

    console = Console(stderr=True)
    console.print(f"fuzzing for {seconds:g} s ...")
    result = run_fuzz(seconds, seed=seed, targets=target or None)
    for name, r in result["targets"].items():
        outcomes = ", ".join(f"{k} {v}" for k, v in r["outcomes"].items())
        console.print(f"{name:>12}: {r['tried']:>8} inputs, {r['crashes']} crashes   ({outcomes})")
        for kind, n in r["crash_kinds"].items():
            console.print(f"{'':>12}  [red]crash[/] {n} x {kind}")
    console.print(f"{result['inputs']} inputs in {result['seconds']} s (seed {result['seed']}), "
                  f"{result['crashes']} crashes")
    if json_out:
        print(json.dumps(result))
    if result["crashes"]:
        raise typer.Exit(1)


# The retention time-travel simulation and the sweeper benchmark drive the gateway's real store
# and sweeper, so they live here, beside the other benchmarks. They are also joined into
# `vericam retention` as `simulate` and `bench` (the `vericam.subcommands` entry points), so
# the gateway ships no benchmark code and never imports the simulator.
def _fail(msg: str, code: int = 2):
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def retention_simulate(days: int = typer.Option(40, "--days", help="Simulated days."),
                       seed: int = typer.Option(1, "--seed"),
                       data: Path = typer.Option(None, "--data", help="Keep the simulated gateway's data here "
                                                 "(default: a temporary directory)."),
                       as_json: bool = typer.Option(False, "--json", help="End with one JSON line.")) -> None:
    """Time travel: the real store, sweeper, holds and key store under a simulated clock.

    Checks every simulated hour: image ages against the rules, orphans, whether anything
    deleted still decrypts from a nightly backup with the live key store, and the oldest item
    of every other class of personal data against its rule (`classes`). Exit 1 on a violation."""
    from simulator.bench.retention_sim import simulate

    if data is not None and data.exists() and any(data.iterdir()):
        _fail(f"{data} is not empty: the simulation needs a fresh data directory")
    r = simulate(days=days, seed=seed, data_dir=data, progress=typer.echo)
    if as_json:
        typer.echo(json.dumps(r, sort_keys=True))
    else:
        typer.echo(f"{r['violations']} violations; oldest unheld image {r['max_age_days_unheld']} days, held "
                   f"{r['max_age_days_held']} days; {r['orphans']} orphans; {r['decryptable_after_expiry']} "
                   "deleted images decryptable from backups")
        for cls, c in r["classes"].items():
            typer.echo(f"  {cls:18} rule {c['rule_days']:5d} days, oldest kept {c['max_age_days']:9.3f} days")
    if r["violations"]:
        raise typer.Exit(1)


def retention_bench(stored: int = typer.Option(1_000_000, "--stored"),
                    expired: int = typer.Option(100_000, "--expired"),
                    batch: int = typer.Option(1000, "--batch"),
                    workdir: Path = typer.Option(None, "--workdir", help="Where to build the store (a real disk)."),
                    as_json: bool = typer.Option(False, "--json")) -> None:
    """Time a sweep of EXPIRED images out of STORED and an empty sweep, against raw unlink."""
    from simulator.bench.retention import bench

    if not 0 < expired <= stored:
        _fail("need 0 < --expired <= --stored")
    r = bench(stored, expired, batch, str(workdir) if workdir else None, progress=lambda l: typer.echo(l, err=True))
    if as_json:
        typer.echo(json.dumps(r, sort_keys=True))
    else:
        typer.echo(f"swept {expired} of {stored} images in {r['sweep_s']} s ({r['sweep_per_image_us']} us each), "
                   f"{r['sweep_vs_raw_unlink']}x a raw unlink of the same files ({r['raw_unlink_s']} s); "
                   f"a sweep with nothing expired: {r['empty_sweep_ms']} ms")


bench_app.command("retention")(retention_bench)
bench_app.command("retention-simulate")(retention_simulate)
