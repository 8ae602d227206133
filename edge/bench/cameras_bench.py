"""``edgedet bench cameras``: N cameras in one ``edgedet camera`` process against N single-camera processes,
side by side in one run, and the one process under HTTP stream load.

Every camera plays its own generated video (:func:`edgedet.edge.datasets.synthetic_tracks.render_tracks`,
one seed per camera, ``--unique-s`` seconds rendered to MJPEG ``.avi`` and looped by the daemon with
``loop: true`` at ``source_fps``). The daemons are the real command (``python -m edgedet.cli camera --config
...``), pinned to the same ``--cores`` CPUs, each with the HTTP server on a free port; figures are read
over HTTP from ``/metrics`` (``edgedet_frames_processed_total{camera=...}`` and friends) and from
``/proc/<pid>``. Phases, each measured over ``--seconds`` after ``--warmup`` seconds:

1. one process, every camera in its ``cameras:`` list (one model, one inference thread);
2. the same process while ``--clients`` MJPEG clients read ``/cameras/<name>/stream.mjpg`` continuously
   (client ``i`` on camera ``i mod N``, one thread each, in this process: "browsers' worth" of streams);
3. N processes, one camera each (the way it was done before ``cameras:``).

Per phase: processed frames per second per camera (from the counters' difference over the window) and all
together; frames captured (the offered load); mean detector latency per frame (pre-processing + inference +
decoding, from the latency histogram's sum and count); the daemons' CPU time (``utime + stime``) as cores;
resident memory, summed over the phase's processes and sampled every ``--sample-s``: ``VmRSS`` from
``/proc/<pid>/status`` (peak and median; what the goal is about) and ``Pss`` from
``/proc/<pid>/smaps_rollup`` (shared library pages split between the processes that map them, so N
processes are not charged N times for one library); and the CPU the rest of the machine used in the
window (other jobs competing for the cores).
"""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgedet.edge.bench.figures import median, parse_size
from edgedet.edge.datasets.synthetic_tracks import render_tracks, write_video
from edgedet.edge.runtime.output_paths import output_file, write_text_atomic

__all__ = [
    "DaemonProcess",
    "MemorySampler",
    "StreamClients",
    "bench_cameras",
    "cli",
    "daemon_config",
    "make_videos",
    "parse_metrics",
]

CAMERA_COMMAND = (sys.executable, "-m", "edgedet.cli", "camera")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SERIES = {  # /metrics series read per camera -> short name
    "edgedet_frames_processed_total": "processed",
    "edgedet_frames_captured_total": "captured",
    "edgedet_frames_dropped_total": "dropped",
    "edgedet_inference_latency_seconds_sum": "latency_sum",
    "edgedet_inference_latency_seconds_count": "latency_count",
}
_SAMPLE = re.compile(r"^([A-Za-z_:][\w:]*)\{([^}]*)\}\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
MARKER = b"--frame\r\n"  # the MJPEG boundary of edge/camera/http.py


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ /proc readers


def rss_kb(pid: int) -> int:
    """``VmRSS`` of ``pid`` in kB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def pss_kb(pid: int) -> int:
    """``Pss`` of ``pid`` in kB from ``smaps_rollup`` (0 where the kernel has none)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds of ``pid`` (all its threads) so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14 and 15)
    except (OSError, ValueError, IndexError):
        return 0.0


def machine_busy_seconds() -> float:
    """CPU seconds every CPU of the machine spent busy (not idle, not waiting for I/O) so far."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    guest = sum(values[8:10]) if len(values) > 9 else 0  # already counted in user and nice
    return (sum(values) - idle - guest) / CLOCK_TICKS


class MemorySampler:
    """Samples ``VmRSS`` and ``Pss`` of ``pids`` every ``interval`` s in a thread; sums per sample."""

    def __init__(self, pids: Sequence[int], interval: float = 1.0) -> None:
        self.pids = list(pids)
        self.interval = float(interval)
        self.rss: list[int] = []  # kB, summed over the pids, one per sample
        self.pss: list[int] = []
        self.per_pid_rss: dict[int, list[int]] = {pid: [] for pid in self.pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def _sample(self) -> None:
        rss = {pid: rss_kb(pid) for pid in self.pids}
        for pid, kb in rss.items():
            self.per_pid_rss[pid].append(kb)
        self.rss.append(sum(rss.values()))
        self.pss.append(sum(pss_kb(pid) for pid in self.pids))

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()  # the last moment of the window too

    def summary(self) -> dict[str, Any]:
        mb = 1 / 1024
        return {
            "samples": len(self.rss),
            "rss_peak_mb": max(self.rss) * mb,
            "rss_median_mb": median(self.rss) * mb,
            "pss_peak_mb": max(self.pss) * mb,
            "pss_median_mb": median(self.pss) * mb,
            "rss_peak_per_process_mb": [max(v) * mb for v in self.per_pid_rss.values()],
        }


# ----------------------------------------------------------------------------------------------- metrics


def parse_metrics(text: str) -> dict[str, dict[str, float]]:
    """``camera -> {processed, captured, dropped, latency_sum, latency_count}`` from Prometheus text."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        found = _SAMPLE.match(line.strip())
        if not found or found.group(1) not in SERIES:
            continue
        labels = dict(_LABEL.findall(found.group(2)))
        if "camera" not in labels:
            continue
        out.setdefault(labels["camera"], {})[SERIES[found.group(1)]] = float(found.group(3))
    return out


# ------------------------------------------------------------------------------------------- the daemons


def make_videos(folder: Path, cameras: int, size: tuple[int, int], fps: float, seconds: float, seed: int) -> list[Path]:
    """One MJPEG ``.avi`` of ``seconds`` per camera, seeds ``seed``, ``seed + 1``, ..."""
    frames = max(2, round(seconds * fps))
    paths = []
    for i in range(cameras):
        _progress(f"rendering camera {i}: {frames} frames at {size[0]}x{size[1]}, seed {seed + i} ...")
        video = render_tracks(frames, size, seed + i, fps=fps)
        paths.append(write_video(folder / f"cam{i}.avi", video))
    return paths


def daemon_config(
    model: str,
    cameras: Sequence[tuple[str, str]],
    *,
    token: str,
    threads: int | None,
    source_fps: float,
    stream_clients: int,
    spec: str | None = None,
) -> dict[str, Any]:
    """A daemon config: one camera at the top level, several as ``cameras:``; HTTP on a free port."""
    config: dict[str, Any] = {
        "model": str(model),
        "threads": threads,
        "source_fps": source_fps,
        "loop": True,
        "http": {"enabled": True, "port": 0, "token": token, "stream_clients": stream_clients},
    }
    if spec:
        config["spec"] = spec
    if len(cameras) == 1:
        config["name"], config["source"] = cameras[0]
    else:
        config["cameras"] = [{"name": name, "source": source} for name, source in cameras]
    return config


@dataclass
class DaemonProcess:
    """``python -m edgedet.cli camera --config DIR/camera.yaml``, pinned to ``cpus``."""

    workdir: Path
    config: dict[str, Any]
    cpus: set[int] | None = None
    token: str = ""
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    cameras: list[str] = field(default_factory=list)

    def start(self) -> DaemonProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "camera.yaml"
        path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        cams = self.config.get("cameras") or [{"name": self.config["name"]}]
        self.cameras = [c["name"] for c in cams]
        self.token = self.config["http"]["token"]
        cpus = self.cpus
        pin: Callable[[], None] | None = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        with open(self.log_path, "wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [*CAMERA_COMMAND, "--config", str(path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=pin,
            )
        return self

    @property
    def log_path(self) -> Path:
        return self.workdir / "daemon.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _check_alive(self, what: str) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"the daemon in {self.workdir} exited ({self.proc.returncode}) {what}:\n{self.log()[-3000:]}"
            )

    def wait_url(self, timeout: float = 120.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = re.search(r"serving on (http://\S+?)/ ", self.log())
            if found:
                self.url = found.group(1)
                return self.url
            self._check_alive("before serving HTTP")
            time.sleep(0.05)
        raise RuntimeError(f"the daemon in {self.workdir} did not serve HTTP in {timeout:g} s:\n{self.log()[-3000:]}")

    def get(self, path: str, timeout: float = 10.0) -> bytes:
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()

    def counters(self) -> dict[str, dict[str, float]]:
        """Per camera: its ``/metrics`` counters (see :data:`SERIES`)."""
        self._check_alive("while measuring")
        found = parse_metrics(self.get("/metrics").decode())
        missing = set(self.cameras) - set(found)
        if missing:
            raise RuntimeError(f"/metrics of {self.workdir.name} has no series for camera(s) {sorted(missing)}")
        return {name: found[name] for name in self.cameras}

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------------------- stream clients


@dataclass
class _Client:
    url: str
    camera: str
    frames: int = 0
    bytes: int = 0
    status: int | None = None
    error: str | None = None


class StreamClients:
    """``n`` threads, client ``i`` reading ``/cameras/<cameras[i mod N]>/stream.mjpg`` continuously."""

    def __init__(self, daemon: DaemonProcess, n: int, timeout: float = 10.0) -> None:
        names = daemon.cameras
        self.token = daemon.token
        self.timeout = timeout
        self.clients = [
            _Client(f"{daemon.url}/cameras/{names[i % len(names)]}/stream.mjpg", names[i % len(names)])
            for i in range(n)
        ]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._read, args=(c,), daemon=True) for c in self.clients]

    def _read(self, client: _Client) -> None:
        request = urllib.request.Request(client.url, headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                client.status = response.status
                tail = b""
                while not self._stop.is_set():
                    chunk = response.read1(65536)
                    if not chunk:
                        client.error = "the server closed the stream"
                        return
                    client.bytes += len(chunk)
                    data = tail + chunk
                    client.frames += data.count(MARKER)
                    tail = data[-(len(MARKER) - 1) :]
        except urllib.error.HTTPError as exc:
            client.status, client.error = exc.code, exc.read().decode(errors="replace")[:200]
        except OSError as exc:
            if not self._stop.is_set():
                client.error = f"{type(exc).__name__}: {exc}"

    def __enter__(self) -> StreamClients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 2.0)

    def snapshot(self) -> list[tuple[int, int]]:
        return [(c.frames, c.bytes) for c in self.clients]

    def wait_streaming(self, timeout: float) -> None:
        """Until every client has had a frame; ``RuntimeError`` naming the first failure otherwise."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            failed = [c for c in self.clients if c.error is not None]
            if failed:
                c = failed[0]
                raise RuntimeError(f"stream client on {c.url}: HTTP {c.status}: {c.error}")
            if all(c.frames > 0 for c in self.clients):
                return
            time.sleep(0.05)
        waiting = sum(c.frames == 0 for c in self.clients)
        raise RuntimeError(f"{waiting} of {len(self.clients)} stream clients had no frame within {timeout:g} s")


# ------------------------------------------------------------------------------------------ measurement


def _wait_all_processing(daemons: Sequence[DaemonProcess], timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        counts = [c["processed"] for d in daemons for c in d.counters().values()]
        if all(n > 0 for n in counts):
            return
        time.sleep(0.2)
    raise RuntimeError(f"not every camera processed a frame within {timeout:g} s")


def measure(
    daemons: Sequence[DaemonProcess],
    seconds: float,
    sample_s: float = 1.0,
    clients: StreamClients | None = None,
) -> dict[str, Any]:
    """The figures of one window of ``seconds`` over ``daemons`` (already warmed up)."""
    pids = [d.pid for d in daemons]
    with MemorySampler(pids, sample_s) as memory:
        before = {name: c for d in daemons for name, c in d.counters().items()}
        cpu0 = [cpu_seconds(pid) for pid in pids]
        own0, busy0, t0 = cpu_seconds(), machine_busy_seconds(), time.perf_counter()
        streamed0 = clients.snapshot() if clients else []
        time.sleep(seconds)
        after = {name: c for d in daemons for name, c in d.counters().items()}
        cpu1 = [cpu_seconds(pid) for pid in pids]
        own1, busy1, t1 = cpu_seconds(), machine_busy_seconds(), time.perf_counter()
        streamed1 = clients.snapshot() if clients else []
    wall = t1 - t0
    cameras = {}
    for name, b in before.items():
        a = after[name]
        frames = a["processed"] - b["processed"]
        count = a.get("latency_count", 0.0) - b.get("latency_count", 0.0)
        cameras[name] = {
            "frames": int(frames),
            "fps": frames / wall,
            "captured_fps": (a.get("captured", 0.0) - b.get("captured", 0.0)) / wall,
            "dropped_fps": (a.get("dropped", 0.0) - b.get("dropped", 0.0)) / wall,
            "latency_ms": 1e3 * (a.get("latency_sum", 0.0) - b.get("latency_sum", 0.0)) / count if count else None,
        }
    fps = [c["fps"] for c in cameras.values()]
    daemon_cpu = sum(c1 - c0 for c0, c1 in zip(cpu0, cpu1, strict=True))
    own_cpu = own1 - own0
    out: dict[str, Any] = {
        "processes": len(daemons),
        "wall_s": wall,
        "cameras": cameras,
        "fps_total": sum(fps),
        "fps_min": min(fps),
        "fps_max": max(fps),
        "captured_fps_total": sum(c["captured_fps"] for c in cameras.values()),
        "latency_ms_median": median([c["latency_ms"] for c in cameras.values() if c["latency_ms"] is not None]),
        "cpu_cores": daemon_cpu / wall,
        "bench_cpu_cores": own_cpu / wall,  # this process: the stream clients, the sampler, the HTTP reads
        "other_cpu_cores": max(0.0, (busy1 - busy0) - daemon_cpu - own_cpu) / wall,  # the rest of the machine
        "memory": memory.summary(),
    }
    if clients is not None:
        per_client = [
            {
                "camera": c.camera,
                "fps": (s1[0] - s0[0]) / wall,
                "mb_per_s": (s1[1] - s0[1]) / wall / 1e6,
                "error": c.error,
            }
            for c, s0, s1 in zip(clients.clients, streamed0, streamed1, strict=True)
        ]
        out["clients"] = {
            "n": len(per_client),
            "fps_min": min(c["fps"] for c in per_client),
            "fps_max": max(c["fps"] for c in per_client),
            "mb_per_s_total": sum(c["mb_per_s"] for c in per_client),
            "errors": [c["error"] for c in per_client if c["error"]],
            "per_client": per_client,
        }
    return out


def _stop_all(daemons: Sequence[DaemonProcess]) -> None:
    for d in daemons:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.send_signal(signal.SIGTERM)
    for d in daemons:
        d.stop()


def bench_cameras(
    model: str,
    videos: Sequence[Path],
    workdir: Path,
    *,
    seconds: float = 30.0,
    warmup: float = 10.0,
    clients: int = 10,
    cpus: set[int] | None = None,
    threads: int | None = None,
    source_fps: float = 15.0,
    sample_s: float = 1.0,
    spec: str | None = None,
) -> dict[str, Any]:
    """The three phases of the module docstring; their figures by phase name."""
    names = [f"cam{i}" for i in range(len(videos))]
    token = secrets.token_hex(12)
    common = {"token": token, "threads": threads, "source_fps": source_fps, "spec": spec}
    streams = max(clients, 1)
    result: dict[str, Any] = {}

    _progress(f"phase 1/3: one process, {len(videos)} cameras: starting ...")
    one = DaemonProcess(
        workdir / "one",
        daemon_config(model, list(zip(names, map(str, videos), strict=True)), stream_clients=streams, **common),
        cpus,
    ).start()
    try:
        one.wait_url()
        _wait_all_processing([one])
        _progress(f"  warm-up {warmup:g} s, then {seconds:g} s measured ...")
        time.sleep(warmup)
        result["one"] = measure([one], seconds, sample_s)
        if clients > 0:
            _progress(f"phase 2/3: the same process with {clients} MJPEG stream clients: {seconds:g} s measured ...")
            with StreamClients(one, clients) as readers:
                readers.wait_streaming(timeout=30.0)
                time.sleep(min(warmup, 3.0))
                result["one_clients"] = measure([one], seconds, sample_s, readers)
    finally:
        _stop_all([one])

    _progress(f"phase 3/3: {len(videos)} processes, one camera each: starting ...")
    many: list[DaemonProcess] = []
    try:
        for name, video in zip(names, videos, strict=True):
            config = daemon_config(model, [(name, str(video))], stream_clients=streams, **common)
            many.append(DaemonProcess(workdir / f"single-{name}", config, cpus).start())
        for d in many:
            d.wait_url()
        _wait_all_processing(many)
        _progress(f"  warm-up {warmup:g} s, then {seconds:g} s measured ...")
        time.sleep(warmup)
        result["many"] = measure(many, seconds, sample_s)
    finally:
        _stop_all(many)
    return result


# ------------------------------------------------------------------------------------------------- goals


def goals(fig: dict[str, Any], seconds: float, target_memory: float, target_drop: float) -> list[str]:
    """The goal lines (``met`` / ``NOT met``)."""
    one, many = fig["one"], fig["many"]
    n = many["processes"]
    lines = []
    share = one["memory"]["rss_peak_mb"] / many["memory"]["rss_peak_mb"]
    lines.append(
        f"goal one process <= {target_memory:.0%} of {n} processes' summed RSS (peaks): "
        f"{one['memory']['rss_peak_mb']:.0f} / {many['memory']['rss_peak_mb']:.0f} MB = {share:.1%}, "
        f"{'met' if share <= target_memory else 'NOT met'}"
    )
    # the counters are read at the window's two ends: one frame per camera is their resolution
    slack = len(one["cameras"]) / seconds
    ok = one["fps_total"] >= many["fps_total"] - slack
    lines.append(
        f"goal aggregate fps, one process >= {n} processes (within one frame per camera, {slack:.2f} fps): "
        f"{one['fps_total']:.1f} vs {many['fps_total']:.1f}, {'met' if ok else 'NOT met'}"
    )
    if "one_clients" in fig:
        loaded = fig["one_clients"]
        drop = 1.0 - loaded["fps_total"] / one["fps_total"] if one["fps_total"] else float("nan")
        lines.append(
            f"goal fps drop with {loaded['clients']['n']} stream clients <= {target_drop:.0%}: "
            f"{one['fps_total']:.1f} -> {loaded['fps_total']:.1f} fps = {drop:+.1%}, "
            f"{'met' if drop <= target_drop else 'NOT met'}"
        )
    return lines


# ------------------------------------------------------------------------------------------------- print


def print_cameras(figures: dict[str, Any]) -> None:
    meta, fig = figures["meta"], figures["figures"]
    print(f"cameras bench: {meta['machine']}, python {meta['python']}")
    print(f"model: {meta['model']}")
    print(f"cameras: {meta['cameras']}")
    print(f"run: {meta['run']}")
    print()
    phases = [
        (k, v) for k, v in (("one", "1 process"), ("one_clients", "1 process + streams"), ("many", "")) if k in fig
    ]
    heads = [label or f"{fig['many']['processes']} processes" for _, label in phases]
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, show: Callable[[dict[str, Any]], str]) -> None:
        rows.append((label, [show(fig[k]) for k, _ in phases]))

    row("processed fps, all cameras", lambda p: f"{p['fps_total']:.1f}")
    row("per camera, min / max", lambda p: f"{p['fps_min']:.1f} / {p['fps_max']:.1f}")
    row("captured fps, all cameras", lambda p: f"{p['captured_fps_total']:.1f}")
    row("detector ms / frame (median of cameras)", lambda p: f"{p['latency_ms_median']:.2f}")
    row("CPU of the daemons, cores", lambda p: f"{p['cpu_cores']:.2f}")
    row(
        "RSS summed, peak / median MB",
        lambda p: f"{p['memory']['rss_peak_mb']:.0f} / {p['memory']['rss_median_mb']:.0f}",
    )
    row(
        "PSS summed, peak / median MB",
        lambda p: f"{p['memory']['pss_peak_mb']:.0f} / {p['memory']['pss_median_mb']:.0f}",
    )
    row("CPU of this bench (clients), cores", lambda p: f"{p['bench_cpu_cores']:.2f}")
    row("CPU of other jobs, cores", lambda p: f"{p['other_cpu_cores']:.2f}")
    if "one_clients" in fig:
        c = fig["one_clients"]["clients"]
        rows.append(
            (
                "stream clients: fps each min / max, MB/s",
                [
                    "—",
                    f"{c['fps_min']:.1f} / {c['fps_max']:.1f}, {c['mb_per_s_total']:.1f}",
                    *(["—"] if "many" in fig else []),
                ],
            )
        )
    width = max(len(label) for label, _ in rows)
    cols = [max(len(h), *(len(v[i]) for _, v in rows)) for i, h in enumerate(heads)]
    print(f"{'':<{width}}  " + "  ".join(f"{h:>{w}}" for h, w in zip(heads, cols, strict=True)))
    for label, values in rows:
        print(f"{label:<{width}}  " + "  ".join(f"{v:>{w}}" for v, w in zip(values, cols, strict=True)))
    print()
    for key, _ in phases:
        per = fig[key]["cameras"]
        print(f"{key}: per camera fps " + ", ".join(f"{name} {c['fps']:.1f}" for name, c in per.items()))
    print()
    for line in figures["goals"]:
        print(line)


# ---------------------------------------------------------------------------------------------------- cli


def _cpus(cores: int) -> set[int] | None:
    """The first ``cores`` CPUs this process may use (``None``: no pinning, ``cores`` 0)."""
    if cores <= 0:
        return None
    usable = sorted(os.sched_getaffinity(0))
    return set(usable[:cores])


def cli(args: Any) -> int:
    """``edgedet bench cameras --model M [--cameras N] [--seconds S] [--clients C] [--json PATH]``."""
    if not getattr(args, "model", None):
        raise ValueError("--model: required here (the edgedet command builds one when the train extra is there)")
    if not Path(args.model).is_file():
        raise FileNotFoundError(f"--model {args.model}: no such file")
    json_path = output_file(args.json, "--json") if args.json else None
    size = parse_size(args.size, minimum=64)
    if args.cameras < 1 or args.seconds <= 0 or args.warmup < 0 or args.clients < 0 or args.clients > 64:
        raise ValueError(
            f"expected --cameras >= 1, --seconds > 0, --warmup >= 0 and --clients in 0..64, got {args.cameras}, "
            f"{args.seconds:g}, {args.warmup:g}, {args.clients}"
        )
    if args.fps <= 0 or args.source_fps < 0:
        raise ValueError(f"expected --fps > 0 and --source-fps >= 0, got {args.fps:g}, {args.source_fps:g}")
    cpus = _cpus(args.cores)
    threads = args.threads or (len(cpus) if cpus else None)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgedet-cameras-bench-") as tmp:
        videos = make_videos(Path(tmp), args.cameras, size, args.fps, args.unique_s, args.seed)
        fig = bench_cameras(
            args.model,
            videos,
            Path(tmp),
            seconds=args.seconds,
            warmup=args.warmup,
            clients=args.clients,
            cpus=cpus,
            threads=threads,
            source_fps=args.source_fps,
            sample_s=args.sample_s,
            spec=args.spec,
        )
    usable = len(os.sched_getaffinity(0))
    pinned = f"pinned to CPUs {sorted(cpus)}" if cpus else "not pinned"
    clients_note = (
        f"; {args.clients} MJPEG clients in this process (http.stream_clients {max(args.clients, 1)}, "
        f"stream_fps the default)"
        if args.clients
        else ""
    )
    figures = {
        "meta": {
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip() + f", {usable} usable cpus",
            "python": platform.python_version(),
            "model": getattr(args, "model_note", None) or str(args.model),
            "cameras": f"{args.cameras} synthetic-track videos (seeds {args.seed}..{args.seed + args.cameras - 1}), "
            f"{size[0]}x{size[1]} MJPEG, {args.unique_s:g} s looped, source_fps {args.source_fps:g}",
            "run": f"daemons {pinned}, threads {threads or 'default'}; warm-up {args.warmup:g} s, "
            f"{args.seconds:g} s measured per phase, memory sampled every {args.sample_s:g} s{clients_note}",
            "wall_s": round(time.perf_counter() - started, 1),
        },
        "figures": fig,
        "goals": goals(fig, args.seconds, args.target_memory, args.target_drop),
    }
    print_cameras(figures)
    print(f"wall time {figures['meta']['wall_s']} s")
    if json_path is not None:
        write_text_atomic(json_path, json.dumps(figures, indent=2, default=float) + "\n")
        print(f"wrote {json_path}")
    return 0
