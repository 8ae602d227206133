"""The reference pages read off the code (``docs/reference/``: command line, metrics, MQTT, model spec) list
everything the code has, and a page edited by hand is reported stale. Each test reads the code its own way
(the parser's subparsers, the metrics' text exposition, the sink's topic functions, the dataclass fields)
and looks for it on the committed page; test_config_docs.py covers the config pages."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
from types import SimpleNamespace

import pytest
from conftest import REPO

from edgedet import cli, reference_docs
from edgedet.config_docs import CONFIGS, PAGES, stale_docs, write_docs

PAGE = {page.path.rsplit("/", 1)[-1]: page for page in PAGES}


def read(name: str) -> str:
    return (REPO / "docs" / "reference" / name).read_text(encoding="utf-8")


def sections(text: str) -> dict[str, str]:
    """``{heading text: its body up to the next heading}``."""
    parts = re.split(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def copy_generated(dest):
    for rel in [p.path for p in PAGES] + [t.schema for t in CONFIGS]:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, dest / rel)


# ---------------------------------------------------------------------------------------------- every page


def test_every_nav_page_of_the_reference_is_generated():
    names = {p.path for p in PAGES}
    assert {f"docs/reference/{n}" for n in ("cli.md", "metrics.md", "mqtt.md", "model-spec.md")} <= names
    assert {t.page for t in CONFIGS} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.path.rsplit("/", 1)[-1])
def test_a_page_starts_with_its_title_and_says_it_is_generated(page):
    lines = (REPO / page.path).read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"# {page.title}"
    assert lines[1].startswith("<!-- generated from ") and lines[1].endswith(" -->")
    assert "`python -m edgedet.config_docs --write`" in lines[1]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.path.rsplit("/", 1)[-1])
def test_a_page_edited_by_hand_is_stale_and_rewritten(tmp_path, page):
    copy_generated(tmp_path)
    path = tmp_path / page.path
    original = path.read_text(encoding="utf-8")
    path.write_text(original.replace("\n\n", "\n\nA sentence added by hand.\n\n", 1), encoding="utf-8")
    assert stale_docs(tmp_path) == [path]
    assert write_docs(tmp_path) == [path]
    assert path.read_text(encoding="utf-8") == original
    assert stale_docs(tmp_path) == []


def test_the_pages_anchor_links_resolve():
    markdown = pytest.importorskip("markdown")
    for page in PAGES:
        text = (REPO / page.path).read_text(encoding="utf-8")
        html = markdown.Markdown(extensions=["toc", "tables", "fenced_code"]).convert(text)
        ids = set(re.findall(r'id="([^"]+)"', html))
        assert not set(re.findall(r"\]\(#([^)]+)\)", text)) - ids, page.path


# ---------------------------------------------------------------------------------------------- command line


def parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """``(("bench", "frame"), parser)`` of every subcommand, read off argparse's subparser actions."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from parsers(sub, (*path, name))


def test_the_cli_page_lists_every_subcommand_and_argument():
    text = read("cli.md")
    found = sections(text)
    commands = list(parsers(cli.build_parser()))
    assert {p[0] for p, _ in commands} >= {c.name for c in cli.COMMANDS}
    assert any(len(p) == 2 for p, _ in commands)  # nested: edgedet bench frame ...
    for path, sub in commands:
        heading = f"`{' '.join(('edgedet', *path))}`"
        assert heading in found, heading
        assert f"[{heading}](#" in text  # in the command list
        body = found[heading]
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            for flag in action.option_strings:
                assert f"`{flag}`" in body, f"{heading}: {flag}"
            if not action.option_strings:
                positional = [r for r in body.splitlines() if "| positional |" in r]
                assert any(action.metavar or action.dest in r for r in positional), f"{heading}: {action.dest}"
            if action.help:
                assert action.help.replace("%%", "%").split()[0] in body
    headings = [h for h in found if h.startswith("`edgedet ")]
    assert len(headings) == len(commands)  # no section of a command that is gone


def test_the_cli_page_follows_the_parser(monkeypatch):
    def add(p: argparse.ArgumentParser) -> None:
        p.add_argument("--widgets", type=int, default=7, metavar="N", help="how many widgets (|a|b|)")
        p.add_argument("--mode", choices=("fast", "slow"), default="fast", help="the mode")
        p.add_argument("items", nargs="+", metavar="ITEM")

    extra = cli.Command("zz-new", "x:y", "a command added in the test", add)
    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, extra))
    page = reference_docs.cli_page()
    body = sections(page)["`edgedet zz-new`"]
    assert "edgedet zz-new ITEM [ITEM ...] [options]" in body
    assert "| `--widgets` | `N` (integer) | `7` | how many widgets (\\|a\\|b\\|) |" in body
    assert "| `--mode` | `MODE` | `fast` | the mode; one of `fast`, `slow` |" in body
    assert "| `ITEM [ITEM ...]` | positional | required |" in body
    assert "[`edgedet zz-new`](#edgedet-zz-new)" in page
    assert page != read("cli.md").split("-->\n\n", 1)[1]


def test_the_default_bench_kind_is_named():
    body = sections(read("cli.md"))["`edgedet bench`"]
    default = next(c for c in cli.COMMANDS if c.name == "bench").subcommands[0].name
    assert f"is `edgedet bench {default} [options]`" in body


# ---------------------------------------------------------------------------------------------- metrics


def families_from_a_scrape() -> dict[str, str]:
    """``{name: type}`` of the ``# TYPE`` lines a scrape of a one-camera daemon shows, less the library's."""
    from edgedet.edge.camera.metrics import DaemonMetrics, Registry

    capture = SimpleNamespace(captured=3, reconnects=0, loops=0, connected=True)
    stats = dict.fromkeys(
        ("clips_written", "clips_failed", "clips_skipped", "frames_dropped", "errors", "clips_recording"), 0
    )
    stats.update(bytes_buffered=0, frames_buffered=0, frames_queued=0, frames_backlog=0)
    camera = SimpleNamespace(
        name="porch",
        capture=capture,
        slot=SimpleNamespace(dropped=0),
        scene=SimpleNamespace(filtered=0, objects=SimpleNamespace(live={})),
        mqtt=SimpleNamespace(published=1, errors=0, connected=True),
        clips=SimpleNamespace(stats=lambda: stats),
        last_frame_time=0.0,
        fps=lambda: 1.0,
    )
    daemon = SimpleNamespace(cameras=[camera], started=0.0, events_sink=None, snapshots=None)
    metrics = DaemonMetrics(daemon)
    series = metrics.series("porch")
    series.skipped("static").inc()
    series.object_event("end").inc()

    def types(text: str) -> dict[str, str]:
        return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE))

    library = types(Registry().render())
    scraped = types(metrics.registry.render()).items()
    # the 0.0.4 text format shows a counter's or histogram's `_created` series as a gauge of its own
    return {name: kind for name, kind in scraped if name not in library and not name.endswith("_created")}


def test_the_metrics_page_lists_every_metric_of_the_registry():
    text = read("metrics.md")
    scraped = families_from_a_scrape()
    assert len(scraped) > 20 and "edgedet_frames_processed_total" in scraped
    for name, kind in scraped.items():
        assert f"| `{name}` | {kind} |" in text, name
    rows = re.findall(r"^\| `(edgedet_\w+)` \|", text, flags=re.MULTILINE)
    assert sorted(rows) == sorted(scraped)  # and no row of a metric that is gone


def test_the_metrics_page_has_the_labels():
    rows = {r.split(" | ")[0].strip("| `"): r for r in read("metrics.md").splitlines() if r.startswith("| `edgedet")}
    assert "| `camera`, `stage` |" in rows["edgedet_stage_latency_seconds"]
    assert "| `camera`, `reason` |" in rows["edgedet_frames_skipped_total"]
    assert "| — |" in rows["edgedet_uptime_seconds"]
    assert "`le`: 0.001," in rows["edgedet_inference_latency_seconds"]


# ---------------------------------------------------------------------------------------------- MQTT


def test_the_mqtt_page_lists_the_sinks_topics():
    pytest.importorskip("paho.mqtt.client", reason="the MQTT page is generated through the sink (edge extra)")
    from edgedet.edge.camera.config import MqttConfig
    from edgedet.edge.camera.sinks import discovery_messages, mqtt_topics

    text = read("mqtt.md")
    found = sections(text)
    e = reference_docs.EXAMPLE
    config = MqttConfig(host="broker.local", discovery=True)
    discovery = discovery_messages(config, e["camera"], {e["zone"]: [e["label"]]})
    topics = [*mqtt_topics(config, e["camera"]), *discovery]
    for topic in topics:
        assert f"Example topic: `{topic}`." in text, topic
        assert f"`{reference_docs._pattern(topic)}`" in found
    for topic, payload in discovery.items():  # the example payloads are the function's own
        body = found[f"`{reference_docs._pattern(topic)}`"]
        shown = json.loads(re.search(r"```json\n(.*?)\n```", body, flags=re.DOTALL).group(1))
        assert shown == json.loads(payload)


def test_the_mqtt_page_shows_every_event_type():
    from edgedet.edge.camera.sinks import OBJECT_EVENTS

    events = sections(read("mqtt.md"))["`<topic_prefix>/<camera>/events`"]
    for kind in OBJECT_EVENTS:
        assert re.search(rf"An? `{kind}` event:\n\n```json\n\{{\n  \"type\": \"{kind}\"", events), kind


def test_the_mqtt_example_publishes_what_the_page_says():
    pytest.importorskip("paho.mqtt.client", reason="the MQTT page is generated through the sink (edge extra)")
    import paho.mqtt.client as paho

    real = paho.Client
    sent = reference_docs.record_mqtt(qos=1)
    assert paho.Client is real  # the stand-in client is gone again
    status = [m for m in sent if m.topic.endswith("/status")]
    assert [(m.payload, m.will, m.retain, m.qos) for m in status] == [
        ("offline", True, True, 1),
        ("online", False, True, 1),
        ("offline", False, True, 1),
    ]
    assert {m.qos for m in sent if m.topic.endswith(("/events", "/detections"))} == {1}
    counts = [m.payload for m in sent if m.topic.endswith("/driveway/person")]
    assert counts == ["1", "0"]
    table = sections(read("mqtt.md"))["Topics"]
    assert "| [`<topic_prefix>/<camera>/events`](#topic_prefixcameraevents) | `mqtt.qos` | no |" in table
    assert "| [`<topic_prefix>/<camera>/status`](#topic_prefixcamerastatus) | 1 | yes |" in table


def test_a_topic_the_page_does_not_describe_is_an_error(monkeypatch):
    pytest.importorskip("paho.mqtt.client", reason="the MQTT page is generated through the sink (edge extra)")
    topics = dict(reference_docs.TOPICS)
    fewer = {k: v for k, v in topics.items() if k != "<topic_prefix>/<camera>/detections"}
    monkeypatch.setattr(reference_docs, "TOPICS", fewer)
    with pytest.raises(ValueError, match="does not describe"):
        reference_docs.mqtt_page()
    monkeypatch.setattr(reference_docs, "TOPICS", {**topics, "<topic_prefix>/gone": "x"})
    with pytest.raises(ValueError, match="does not publish"):
        reference_docs.mqtt_page()


# ---------------------------------------------------------------------------------------------- model spec


def test_the_model_spec_page_lists_every_field_with_its_default():
    from edgedet.edge.core.model_spec import SPEC_VERSION, ModelSpec
    from edgedet.edge.core.priors import PriorConfig

    found = sections(read("model-spec.md"))
    for heading, cls in (("`ModelSpec`", ModelSpec), ("`priors` (`PriorConfig`)", PriorConfig)):
        rows = [line for line in found[heading].splitlines() if line.startswith("| `")]
        assert [r.split("`")[1] for r in rows] == [f.name for f in dataclasses.fields(cls)]
        for field, row in zip(dataclasses.fields(cls), rows, strict=True):
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                assert "| required |" in row, field.name
            elif field.default is not dataclasses.MISSING and isinstance(field.default, (int, float, str)):
                assert f"| `{json.dumps(field.default)}` |" in row, field.name
    head = next(r for r in found["`ModelSpec`"].splitlines() if r.startswith("| `head`"))
    assert "One of `ssd`, `centernet`." in head
    example = json.loads(re.search(r"```json\n(.*?)\n```", found["Example"], flags=re.DOTALL).group(1))
    assert ModelSpec.from_dict(example) == ModelSpec.ultraface() and example["version"] == SPEC_VERSION


@dataclasses.dataclass
class Documented:
    plain: int = 1
    commented: str = "x"  # a trailing comment
    docstring: float = 0.5
    """An attribute docstring with ``code``."""


def test_field_notes_come_from_comments_and_attribute_docstrings():
    assert reference_docs.field_notes(Documented) == {
        "commented": "a trailing comment",
        "docstring": "An attribute docstring with `code`.",
    }
