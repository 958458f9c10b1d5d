"""The workers' metrics folder stays true as workers end: totals never go back, an ended
worker's gauges go, and its files do not pile up (``squad.metrics.retire_process``)."""

from __future__ import annotations

import os
from unittest import mock

from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from squad.metrics import MULTIPROC_ENV, render, retire_process

REQUESTS = mmap_key(
    "squad_http_requests",
    "squad_http_requests_total",
    ["method", "route", "status"],
    ["POST", "/users", "201"],
    "HTTP requests answered",
)
LATENCY = mmap_key(
    "squad_http_request_duration_seconds",
    "squad_http_request_duration_seconds_bucket",
    ["route", "le"],
    ["/users", "0.1"],
    "Time from a request's arrival to its answer",
)
LATENCY_SUM = mmap_key(
    "squad_http_request_duration_seconds",
    "squad_http_request_duration_seconds_sum",
    ["route"],
    ["/users"],
    "Time from a request's arrival to its answer",
)
HELD = mmap_key(
    "squad_slow_steps_in_memory",
    "squad_slow_steps_in_memory",
    [],
    [],
    "Users whose background work this process holds",
)


class RetireProcessTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = self.mktemp()
        os.makedirs(self.folder)

    def write(self, name: str, values: dict[str, float]) -> None:
        """A metrics file as a worker's prometheus_client writes it."""
        written = MmapedDict(os.path.join(self.folder, name))
        for key, value in values.items():
            written.write_value(key, value, 0.0)
        written.close()

    def worker(self, pid: int, requests: float, held: float) -> None:
        self.write(f"counter_{pid}.db", {REQUESTS: requests})
        self.write(f"histogram_{pid}.db", {LATENCY: requests, LATENCY_SUM: requests / 100})
        self.write(f"gauge_livesum_{pid}.db", {HELD: held})

    def scrape(self) -> dict[str, float]:
        """What ``GET /metrics`` shows, by sample name."""
        with mock.patch.dict(os.environ, {MULTIPROC_ENV: self.folder}):
            text, _ = render()
        return {
            sample.name: sample.value
            for family in text_string_to_metric_families(text.decode())
            for sample in family.samples
            if sample.labels.get("le") in (None, "0.1")
        }

    def test_totals_stay_and_files_do_not_pile_up(self) -> None:
        """Retiring ended workers one after another keeps every counter and histogram total,
        drops their gauges, and leaves one archive file per kind instead of theirs."""
        self.worker(101, requests=5, held=7)
        self.worker(102, requests=3, held=2)
        before = self.scrape()
        self.assertEqual(before["squad_http_requests_total"], 8)
        self.assertEqual(before["squad_slow_steps_in_memory"], 9)

        retire_process(101, self.folder)
        self.worker(103, requests=0, held=1)  # its replacement
        after = self.scrape()
        self.assertEqual(after["squad_http_requests_total"], 8)
        self.assertEqual(after["squad_http_request_duration_seconds_bucket"], 8)
        self.assertAlmostEqual(after["squad_http_request_duration_seconds_sum"], 0.08)
        self.assertEqual(after["squad_slow_steps_in_memory"], 3, "a dead worker's gauge stayed")

        retire_process(102, self.folder)
        self.write("counter_103.db", {REQUESTS: 4})
        self.assertEqual(self.scrape()["squad_http_requests_total"], 12)
        self.assertEqual(
            sorted(name for name in os.listdir(self.folder) if name.endswith(".db")),
            [
                "counter_103.db",
                "counter_archive.db",
                "gauge_livesum_103.db",
                "histogram_103.db",
                "histogram_archive.db",
            ],
        )

    def test_a_worker_that_wrote_nothing_is_retired_quietly(self) -> None:
        """A worker that ended before it counted anything leaves nothing to merge."""
        retire_process(404, self.folder)
        self.assertEqual(sorted(os.listdir(self.folder)), ["merge.lock"])
