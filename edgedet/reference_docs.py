"""The reference pages of the docs site that are read off the code: the command line (the argparse parser
of :mod:`edgedet.cli`), the daemon's Prometheus metrics (its registry), its MQTT topics and payloads (what
:class:`~edgedet.edge.camera.sinks.MqttSink` publishes in an example run) and the model spec fields
(:class:`~edgedet.edge.core.model_spec.ModelSpec`).

Each ``*_page`` function returns a page's body (markdown, without its title and generated-by line);
:mod:`edgedet.config_docs` puts them together with the config pages, writes them (``--write``) and reports
stale ones (``--check``). Everything here is deterministic: the examples use fixed names and times.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import json
import re
import textwrap
import tokenize
from collections.abc import Callable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any

__all__ = ["cli_page", "md_cell", "metrics_page", "model_spec_page", "mqtt_page", "rst_to_md"]


def md_cell(text: Any) -> str:
    """``text`` as one markdown table cell: one line, ``|`` escaped, ``<`` kept from being read as HTML."""
    return " ".join(str(text).split()).replace("|", "\\|").replace("<", "&lt;")


def rst_to_md(text: str) -> str:
    """A docstring's reST-isms as markdown: ``x`` -> `x`, :class:`~a.b.C` -> `C`, :mod:`a.b` -> `a.b`."""

    def role(match: re.Match[str]) -> str:
        target = match.group(1)
        if target.startswith("~"):
            target = target[1:].rsplit(".", 1)[-1]
        return f"`{target}`"

    text = re.sub(r":[a-z]+:`([^`]+)`", role, inspect.cleandoc(text))
    return re.sub(r"``(.+?)``", r"`\1`", text, flags=re.DOTALL)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _code(value: str) -> str:
    return f"`{value}`" if value else ""


def pretty_json(value: Any, indent: str = "") -> str:
    """JSON with one key per line, but lists of numbers and strings on one line (boxes, sizes, labels)."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {pretty_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) and v for v in value):
        if all(isinstance(v, (list, tuple)) and not any(isinstance(x, (dict, list)) for x in v) for v in value):
            return "[" + ", ".join(json.dumps(list(v)) for v in value) + "]"  # a list of short lists
        return "[\n" + ",\n".join(inner + pretty_json(v, inner) for v in value) + f"\n{indent}]"
    return json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------- command line


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """``(name, help, parser)`` of each subcommand of ``parser``, in the order they were added."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            out += [(name, helps.get(name) or sub.description or "", sub) for name, sub in action.choices.items()]
    return out


def walk_commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], str, argparse.ArgumentParser]]:
    """Every subcommand of ``parser`` at any depth: ``(("bench", "frame"), help, parser)``, parents first."""
    for name, help_text, sub in _subcommands(parser):
        yield (*path, name), help_text, sub
        yield from walk_commands(sub, (*path, name))


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The arguments a page lists: all but ``-h`` and the subcommand choice."""
    return [a for a in parser._actions if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


def _metavar(action: argparse.Action) -> str:
    metavar = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
    return " ".join(metavar) if isinstance(metavar, tuple) else str(metavar)


def _value(action: argparse.Action) -> str:
    """What follows the flag (or the positional itself), as argparse's usage writes it."""
    if action.nargs == 0:
        return ""
    m = _metavar(action)
    if action.nargs is None or action.nargs == 1:
        return m
    if action.nargs == "?":
        return f"[{m}]"
    if action.nargs == "*":
        return f"[{m} ...]"
    if action.nargs == "+":
        return f"{m} [{m} ...]"
    if isinstance(action.nargs, int):
        return " ".join([m] * action.nargs)
    return f"{m} ..."  # argparse.REMAINDER


_TYPES = {int: "integer", float: "number", str: "string"}


def _default(action: argparse.Action) -> str:
    if action.required and action.nargs not in ("?", "*"):  # argparse marks a "*" positional required
        return "required"
    if action.nargs == 0 and isinstance(action.default, bool):
        return "on" if action.default else "off"
    default = action.default
    if default is None or default is argparse.SUPPRESS:
        return ""
    if isinstance(default, (list, tuple)):
        return _code(" ".join(map(str, default)))
    return _code(str(default))


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%" in text:  # argparse expands %(default)s and friends, and %% is a literal %
        params = {**vars(action), "prog": prog}
        if action.choices is not None:
            params["choices"] = ", ".join(map(str, action.choices))
        text = text % params
    text = md_cell(text)
    if action.choices is not None:
        text += ("; one of " if text else "One of ") + ", ".join(_code(str(c)) for c in action.choices)
    return text


def _options_table(parser: argparse.ArgumentParser) -> str:
    rows = []
    for action in _options(parser):
        kind = _TYPES.get(action.type, getattr(action.type, "__name__", "")) if action.type is not None else ""
        if action.option_strings:
            argument = ", ".join(_code(s) for s in action.option_strings)
            value = _code(_value(action))
        else:
            argument, value = _code(_value(action)), "positional"
        if kind and action.nargs != 0:
            value += f" ({kind})"
        rows.append([argument, md_cell(value), _default(action), _help(action, parser.prog)])
    return _table(["Argument", "Value", "Default", "Description"], rows)


def _synopsis(prog: str, parser: argparse.ArgumentParser) -> str:
    """``edgedet eval --model MODEL --data DATA [options]``: the required arguments, then ``[options]``."""
    words, optional = [prog], False
    for action in _options(parser):
        if action.option_strings and not action.required:
            optional = True
        elif action.option_strings:
            words.append(f"{action.option_strings[-1]} {_value(action)}".strip())
        else:
            words.append(_value(action))
    subs = _subcommands(parser)
    if subs:
        words.append("KIND")
    return " ".join(words + (["[options]"] if optional or subs else []))


def _slug(text: str) -> str:
    """The anchor MkDocs (Python-Markdown's ``toc``) gives a heading."""
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", text).strip().lower())


def cli_page() -> str:
    """Every command, subcommand and argument of ``edgedet`` (:func:`edgedet.cli.build_parser`)."""
    from edgedet import cli

    parser = cli.build_parser()
    defaults = {c.name: c.subcommands[0].name for c in cli.COMMANDS if c.subcommands}
    commands = list(walk_commands(parser))
    out = [
        f"`edgedet` — {parser.description} Installed with the package (`pip install -e .`; the `train` and "
        "`convert` extras for the commands that need them); `python -m edgedet.cli` is the same command. "
        "Every command also takes `-h` / `--help`, which prints what this page lists.",
        "## Commands",
        _table(
            ["Command", "What it does"],
            [
                [f"[`{' '.join(('edgedet', *p))}`](#{_slug(' '.join(('edgedet', *p)))})", md_cell(h)]
                for p, h, _ in commands
            ],
        ),
        "## Options of every command",
        f"Given before the command: `{_synopsis('edgedet', parser).replace('KIND', 'COMMAND')}`.",
        _options_table(parser),
    ]
    for path, help_text, sub in commands:
        prog = " ".join(("edgedet", *path))
        out.append(f"{'#' * (len(path) + 1)} `{prog}`")
        text = sub.description or help_text
        if text:
            out.append(md_cell(text[0].upper() + text[1:] + ("" if text.endswith((".", "?", "!")) else ".")))
        out.append(f"```\n{_synopsis(prog, sub)}\n```")
        kinds = _subcommands(sub)
        if kinds:
            names = ", ".join(f"[`{name}`](#{_slug(f'{prog} {name}')})" for name, _, _ in kinds)
            default = defaults.get(path[-1]) if len(path) == 1 else None
            tail = f" Without `KIND`, `{prog} [options]` is `{prog} {default} [options]`." if default else ""
            out.append(f"`KIND` is one of {names}.{tail}")
        if _options(sub):
            out.append(_options_table(sub))
    return "\n\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------- metrics


class _Zero:
    """Any attribute, call or item of a stand-in camera or sink: reads as 0 (the metrics' values do not
    matter to the page, only their families and labels)."""

    def __getattr__(self, name: str) -> _Zero:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> _Zero:
        return self

    def __getitem__(self, key: Any) -> _Zero:
        return self

    def __float__(self) -> float:
        return 0.0

    def __int__(self) -> int:
        return 0

    def __len__(self) -> int:
        return 0

    def __add__(self, other: Any) -> Any:
        return other

    __radd__ = __add__


def example_metrics() -> tuple[Any, list[Any]]:
    """A :class:`~edgedet.edge.camera.metrics.DaemonMetrics` for one camera (``porch``, with MQTT and clips)
    whose every family has a series, and its families in registration order (the library's process and
    platform metrics left out)."""
    from edgedet.edge.camera.metrics import DaemonMetrics, Registry

    camera = _Zero()
    daemon = SimpleNamespace(cameras=[SimpleNamespace(name="porch", **dict.fromkeys(_CAMERA_PARTS, camera))])
    daemon.started, daemon.events_sink, daemon.snapshots = 0.0, _Zero(), _Zero()
    daemon.cameras[0].fps = camera
    metrics = DaemonMetrics(daemon)
    series = metrics.series("porch")
    series.skipped("motion")  # families whose series appear with their first label value
    series.object_event("new")
    library = {family.name for family in Registry().collect()}
    return metrics, [family for family in metrics.registry.collect() if family.name not in library]


_CAMERA_PARTS = ("capture", "slot", "scene", "mqtt", "clips", "last_frame_time")


def exposed_name(family: Any) -> str:
    """The name a scrape shows: counters end in ``_total`` (``prometheus_client`` drops it from the family)."""
    return family.name + "_total" if family.type == "counter" else family.name


def metrics_page() -> str:
    """Every metric family of the daemon's registry: name, type, labels, help."""
    from edgedet.edge.camera.metrics import CONTENT_TYPE

    _, families = example_metrics()
    rows = []
    for family in families:
        if not family.samples:
            raise ValueError(f"{family.name}: no series in the example; give it one in example_metrics()")
        labels = list(dict.fromkeys(k for s in family.samples for k in s.labels if k != "le"))
        text = md_cell(family.documentation)
        if family.type == "histogram":
            buckets = [s.labels["le"] for s in family.samples if s.name.endswith("_bucket")]
            buckets = list(dict.fromkeys(buckets))
            text += f" Series `_bucket` (label `le`: {', '.join(buckets)}), `_sum`, `_count`."
        rows.append([f"`{exposed_name(family)}`", family.type, ", ".join(f"`{k}`" for k in labels) or "—", text])
    intro = (
        f"The camera daemon serves its metrics at `GET /metrics` on its HTTP server (`http.*` keys; with "
        f"`http.token` the request needs `Authorization: Bearer <token>`), as `{CONTENT_TYPE}`. Every "
        "per-camera series carries a `camera` label (one camera too); what the process shares (the events "
        "file, snapshots, uptime) has none. The clip families (`edgedet_clip*`) have series only for the "
        "cameras that record clips, the MQTT ones only with an `mqtt:` section. Counters and histograms also "
        "have the `prometheus_client` `_created` series."
    )
    library = (
        "Besides these, `prometheus_client`'s own collectors add the process metrics (on Linux: "
        "`process_resident_memory_bytes`, `process_cpu_seconds_total`, `process_open_fds`, ...) and "
        "`python_info`."
    )
    return (
        "\n\n".join(
            [intro, "## The daemon's metrics", _table(["Metric", "Type", "Labels", "Description"], rows), library]
        )
        + "\n"
    )


# ---------------------------------------------------------------------------------------------- MQTT

EXAMPLE = {"prefix": "edgedet", "discovery": "homeassistant", "camera": "porch", "zone": "driveway", "label": "person"}
T0 = 1718000000.25  # the example's capture time (2024-06-10T06:13:20.250Z)

# What each topic is for, by its pattern; a topic the sink publishes that is not here is an error.
TOPICS = {
    "<topic_prefix>/<camera>/status": (
        "Whether the daemon is up: `online` when it connects, `offline` at a clean stop and, as the broker's "
        "last will, when it vanishes. Subscribers always see the current state."
    ),
    "<topic_prefix>/<camera>/events": (
        "Object events (`new`, `update`, `end`, `enter`, `exit`): a few per object, not one per frame."
    ),
    "<topic_prefix>/<camera>/detections": (
        "Every processed frame's detections; only with `mqtt.detections: true` (a person at a door for a "
        "minute at 10 fps is 600 of these, and 2 object events)."
    ),
    "<topic_prefix>/<camera>/<zone>/<label>": (
        "How many `label` objects are in `zone` now; republished on every reconnect, so a subscriber always "
        "sees the current count."
    ),
    "<discovery_prefix>/binary_sensor/edgedet_<camera>_<zone>_<label>/config": (
        "With `mqtt.discovery: true`: Home Assistant discovery of an occupancy `binary_sensor` per zone and "
        "label, reading the count topic (`-` and `.` in names become `_` in the id)."
    ),
    "<discovery_prefix>/sensor/edgedet_<camera>_<zone>_<label>/config": (
        "With `mqtt.discovery: true`: Home Assistant discovery of a count `sensor` per zone and label."
    ),
}


@dataclasses.dataclass(frozen=True)
class Message:
    topic: str
    payload: str
    qos: int
    retain: bool
    will: bool = False  # the last will, set at connect, published by the broker


def _pattern(topic: str) -> str:
    e = EXAMPLE
    topic = topic.replace(f"{e['discovery']}/", "<discovery_prefix>/", 1) if topic.startswith(e["discovery"]) else topic
    topic = topic.replace(f"{e['prefix']}/{e['camera']}/", "<topic_prefix>/<camera>/", 1)
    for key in ("zone", "label", "camera"):
        topic = topic.replace(e[key], f"<{key}>")
    return topic


def record_mqtt(qos: int = 0) -> list[Message]:
    """What an :class:`~edgedet.edge.camera.sinks.MqttSink` (``mqtt.detections`` and ``mqtt.discovery`` on,
    ``mqtt.qos`` = ``qos``) of camera ``porch`` with zone ``driveway`` publishes through a stand-in paho
    client that connects at once: status, discovery, the object events and zone counts of one person who
    walks into the zone and out and is lost, one frame's detections, and the clean stop."""
    import numpy as np
    import paho.mqtt.client as paho
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    from edgedet.edge.camera.camera import Camera
    from edgedet.edge.camera.capture import Frame
    from edgedet.edge.camera.config import MqttConfig
    from edgedet.edge.camera.events import build_event
    from edgedet.edge.camera.objects import ObjectEvents
    from edgedet.edge.camera.sinks import MqttSink
    from edgedet.edge.camera.zones import ZoneEvent, ZoneUpdate
    from edgedet.edge.runtime.detector import Detection, StageTimings

    sent: list[Message] = []

    class Client:
        """paho's ``Client`` as far as the sink uses it: records what is published."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.on_connect: Callable[..., None] | None = None
            self.on_disconnect: Callable[..., None] | None = None

        def will_set(self, topic: str, payload: Any = None, qos: int = 0, retain: bool = False, **kw: Any) -> None:
            sent.append(Message(topic, str(payload), qos, retain, will=True))

        def loop_start(self) -> None:  # the broker accepts at once
            assert self.on_connect is not None
            self.on_connect(self, None, {}, ReasonCode(PacketTypes.CONNACK, "Success"), None)

        def publish(self, topic: str, payload: Any = None, qos: int = 0, retain: bool = False, **kw: Any) -> Any:
            sent.append(Message(topic, str(payload), qos, retain))
            return SimpleNamespace(rc=paho.MQTT_ERR_SUCCESS, wait_for_publish=lambda timeout=None: True)

        def __getattr__(self, name: str) -> Callable[..., None]:  # connect_async, tls_set, disconnect, ...
            return lambda *args, **kwargs: None

    e = EXAMPLE
    config = MqttConfig(host="broker.local", qos=qos, detections=True, discovery=True)
    assert (config.topic_prefix, config.discovery_prefix) == (e["prefix"], e["discovery"]), "example != defaults"
    real = paho.Client
    paho.Client = Client  # type: ignore[misc]
    try:
        sink = MqttSink(config, e["camera"])
    finally:
        paho.Client = real  # type: ignore[misc]
    sink.announce({e["zone"]: [e["label"]]})
    # The camera routes object events and zone counts to the sink (Camera.emit_objects, run on a stand-in
    # camera with MQTT only).
    camera = SimpleNamespace(clips=None, series=None, events_sink=None, mqtt=sink)
    camera.results = SimpleNamespace(add_events=lambda events: None)
    objects = ObjectEvents(e["camera"], [e["label"]], run_id=str(int(T0)))

    def frame(t: float, box: tuple[float, ...], kind: str | None, count: int | None, ended: bool = False) -> None:
        track = SimpleNamespace(id=7, box=box, score=0.91, class_id=0, end_reason="lost")
        zone_events = [ZoneEvent(kind, e["zone"], 7, e["label"])] if kind else []  # type: ignore[arg-type]
        changed = {} if count is None else {(e["zone"], e["label"]): count}
        update = ZoneUpdate(zone_events, {e["zone"]: {e["label"]: count or 0}}, changed)
        events = objects.update([] if ended else [track], [track] if ended else [], update, t)
        Camera.emit_objects(camera, events, changed)  # type: ignore[arg-type]

    frame(T0, (212.0, 96.0, 300.0, 360.0), "enter", 1)
    frame(T0 + 4.0, (420.0, 90.0, 508.0, 352.0), "exit", 0)
    frame(T0 + 5.5, (420.0, 90.0, 508.0, 352.0), None, None, ended=True)
    image = np.zeros((480, 640, 3), np.uint8)
    detections = [Detection((212.0, 96.0, 300.0, 360.0), 0.91, 0, e["label"])]
    sink.emit(
        build_event(e["camera"], "/dev/video0", Frame(image, 42, None, T0), detections, StageTimings(0.9, 6.1, 0.8))
    )
    sink.close()
    unknown = sorted({_pattern(m.topic) for m in sent} - set(TOPICS))
    if unknown:
        raise ValueError(f"the MQTT sink publishes on {unknown}, which TOPICS in {__name__} does not describe")
    return sent


def _json_object(payload: str) -> dict[str, Any] | None:
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _module_doc(module: str) -> str:
    import importlib

    return rst_to_md(importlib.import_module(module).__doc__ or "")


def mqtt_page() -> str:
    """Every MQTT topic, its QoS, whether it is retained, and example payloads, as the sink publishes them."""
    runs = {qos: record_mqtt(qos) for qos in (0, 2)}
    published = {_pattern(m.topic) for m in runs[0]}
    missing = [p for p in TOPICS if p not in published]
    if missing:
        raise ValueError(f"{__name__}.TOPICS describes {missing}, which the example run does not publish")
    patterns = list(TOPICS)

    def qos_of(pattern: str) -> str:
        levels = {q: {m.qos for m in sent if _pattern(m.topic) == pattern and not m.will} for q, sent in runs.items()}
        if levels[0] != levels[2]:
            return "`mqtt.qos`"
        return ", ".join(map(str, sorted(levels[0])))

    def retained(pattern: str) -> str:
        flags = {m.retain for m in runs[0] if _pattern(m.topic) == pattern}
        return "yes" if flags == {True} else "no" if flags == {False} else "some"

    e = EXAMPLE
    out = [
        "With an `mqtt:` section (see the [daemon config](config-daemon.md)) every camera has its own connection "
        "to the broker (client id `edgedet-<camera>`, or `<client_id>-<camera>`) and publishes on the topics "
        "below. `<topic_prefix>` is `mqtt.topic_prefix` (default `edgedet`), `<camera>` the camera's `name`, "
        "`<discovery_prefix>` is `mqtt.discovery_prefix` (default `homeassistant`). Event payloads are compact "
        "JSON (pretty-printed here). While the broker is away, QoS 1/2 events wait in a queue of at most "
        "`mqtt.max_queued` that drops the oldest; QoS 0 events are dropped.",
        f"The examples are what the daemon's own code publishes for camera `{e['camera']}` with one zone "
        f"`{e['zone']}`, while one `{e['label']}` walks into it, out again, and is lost.",
        "## Topics",
        _table(
            ["Topic", "QoS", "Retained", "What"],
            [[f"[`{p}`](#{_slug(p)})", qos_of(p), retained(p), md_cell(TOPICS[p])] for p in patterns],
        ),
    ]
    for pattern in patterns:
        messages = [m for m in runs[0] if _pattern(m.topic) == pattern]
        out += [f"## `{pattern}`", md_cell(TOPICS[pattern])]
        if pattern.endswith("/events"):
            out.append(_module_doc("edgedet.edge.camera.objects"))
        elif pattern.endswith("/detections"):
            out.append(_module_doc("edgedet.edge.camera.events"))
        out.append(f"Example topic: `{messages[0].topic}`.")
        documents = [(m, _json_object(m.payload)) for m in messages]
        plain = [m for m, doc in documents if doc is None]
        if plain:
            will = " (the last will, set at connect: the broker publishes it when the daemon vanishes)"
            listed = ", ".join(f"`{m.payload}`" + (will if m.will else "") for m in plain)
            out.append(f"Payloads in the example, in order: {listed}.")
        kinds: set[Any] = set()
        for _, doc in documents:
            if doc is None or doc.get("type") in kinds:
                continue
            kind = doc.get("type")
            kinds.add(kind)
            article = "An" if str(kind)[:1] in "aeiou" else "A"
            label = f"{article} `{kind}` event:" if kind else "Payload:"
            out += [label, f"```json\n{pretty_json(doc)}\n```"]
    return "\n\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------- model spec


def field_notes(cls: type) -> dict[str, str]:
    """A dataclass's per-field notes from its source: a string right after the field (an attribute
    docstring) or a comment at the end of the field's line."""
    source = textwrap.dedent(inspect.getsource(cls))
    body = ast.parse(source).body[0]
    assert isinstance(body, ast.ClassDef)
    lines: dict[int, str] = {}
    notes: dict[str, str] = {}
    for i, node in enumerate(body.body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            lines[node.end_lineno or node.lineno] = node.target.id
            after = body.body[i + 1] if i + 1 < len(body.body) else None
            if (
                isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                notes[node.target.id] = rst_to_md(after.value.value)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and tok.start[0] in lines:
            name = lines[tok.start[0]]
            comment = tok.string.lstrip("#").strip()
            notes[name] = (notes[name] + " " if name in notes else "") + rst_to_md(comment)
    return notes


def _json_default(value: Any) -> str:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.dumps(_plain(value))


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _fields_table(cls: type, extra_notes: dict[str, str] | None = None) -> str:
    notes = field_notes(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f"`{_json_default(f.default)}`"
        elif f.default_factory is not dataclasses.MISSING:
            default = f"`{_json_default(f.default_factory())}`"
        else:
            default = "required"
        kind = str(f.type).replace(" | ", " or ")
        note = " ".join(n for n in ((extra_notes or {}).get(f.name, ""), notes.get(f.name, "")) if n)
        rows.append([f"`{f.name}`", f"`{kind}`", default, md_cell(note)])
    return _table(["Field", "Type", "Default", "Notes"], rows)


def model_spec_page() -> str:
    """The fields of :class:`~edgedet.edge.core.model_spec.ModelSpec` and its prior config."""
    from edgedet.edge.core import model_spec
    from edgedet.edge.core.model_spec import SPEC_VERSION, ModelSpec
    from edgedet.edge.core.priors import PriorConfig

    choices = {
        name: "One of " + ", ".join(f"`{c}`" for c in allowed) + "." for name, allowed in model_spec._CHOICES.items()
    }
    example = ModelSpec.ultraface().to_dict()
    return (
        "\n\n".join(
            [
                _module_doc("edgedet.edge.core.model_spec"),
                rst_to_md(ModelSpec.__doc__ or ""),
                f"In JSON the spec is an object with these fields (tuples as lists, `priors` as an object or "
                f"`null`) and `version` ({SPEC_VERSION}); unknown keys are an error.",
                "## `ModelSpec`",
                _fields_table(ModelSpec, choices),
                "## `priors` (`PriorConfig`)",
                rst_to_md(PriorConfig.__doc__ or ""),
                _fields_table(PriorConfig),
                "## Example",
                "The spec of the published UltraFace slim model (`ModelSpec.ultraface()`, also `--spec ultraface`):",
                f"```json\n{pretty_json(example)}\n```",
            ]
        )
        + "\n"
    )
