"""squad.metrics: what the supervisor records for the workers' scrapes."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from twisted.trial.unittest import SynchronousTestCase

from squad.metrics import count_worker_restart


def restarts_in(directory: str) -> list[tuple[str, str, float]]:
    """(family type, sample name, value) of the restart counter, as a worker's scrape of
    ``directory`` adds it up."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    return [
        (family.type, sample.name, sample.value)
        for family in registry.collect()
        for sample in family.samples
        if family.name == "squad_worker_restarts"
    ]


class WorkerRestartCountTests(SynchronousTestCase):
    def test_each_restart_adds_one_to_the_workers_scrape(self) -> None:
        """Each restart the supervisor records is one more in squad_worker_restarts_total, a
        counter, as the multiprocess collector of the workers reads the shared folder."""
        directory = self.mktemp()
        os.makedirs(directory)
        count_worker_restart(directory)
        self.assertEqual(restarts_in(directory), [("counter", "squad_worker_restarts_total", 1)])
        count_worker_restart(directory)
        self.assertEqual(restarts_in(directory), [("counter", "squad_worker_restarts_total", 2)])
