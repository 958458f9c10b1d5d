"""The benchmark's tests: ``./bin/benchmark``, its modes, its comparison servers and its probes."""
