"""Everything that measures: the accuracy-vs-latency report and the runtime benches (edge extra only)."""
