"""The daemon's stdlib Prometheus registry renders valid text exposition format."""

import pytest

from edgedet.edge.camera.metrics import Registry


def test_registry_renders_parseable_prometheus_text():
    parser = pytest.importorskip("prometheus_client.parser", reason="prometheus-client (dev extra) checks the format")
    r = Registry()
    frames = r.counter("x_frames_total", "Frames.")
    frames.inc(3)
    r.gauge("x_up", "Up.").set_function(lambda: True)
    g = r.gauge("x_temp", "Temperature.", ["zone"])
    g.set(41.5, zone='cpu "big"\n')
    h = r.histogram("x_latency_seconds", "Latency.", ["stage"], buckets=(0.01, 0.1))
    for v in (0.005, 0.05, 0.5):
        h.observe(v, stage="infer")
    text = r.render()
    families = {f.name: f for f in parser.text_string_to_metric_families(text)}
    assert families["x_frames"].type == "counter" and families["x_frames"].samples[0].value == 3
    assert families["x_up"].samples[0].value == 1
    assert families["x_temp"].samples[0].labels == {"zone": 'cpu "big"\n'}
    buckets = {s.labels["le"]: s.value for s in families["x_latency_seconds"].samples if s.name.endswith("_bucket")}
    assert buckets == {"0.01": 1, "0.1": 2, "+Inf": 3}
    assert 'x_latency_seconds_sum{stage="infer"} 0.555' in text
    assert h.count(stage="infer") == 3


def test_metric_misuse_is_an_error():
    r = Registry()
    c = r.counter("a_total", "A.", ["k"])
    with pytest.raises(ValueError, match="cannot decrease"):
        c.inc(-1, k="x")
    with pytest.raises(ValueError, match="expected labels"):
        c.inc(1)
    with pytest.raises(ValueError, match="registered twice"):
        r.gauge("a_total", "again")
