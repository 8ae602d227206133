"""The on-device camera daemon: sources, capture, events, sinks, HTTP, metrics, systemd."""
