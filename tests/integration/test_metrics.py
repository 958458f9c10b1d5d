"""GET /metrics: one Prometheus view of the whole service, summed over worker processes."""

from __future__ import annotations

import treq
from twisted.trial.unittest import SynchronousTestCase, TestCase

from squad.metrics import method_label, route_labeller
from tests.support import ready_squad_process, sleep


def sample(text: str, name: str) -> float:
    """The value of one exposition line, e.g. ``name{labels}``; 0 when absent."""
    for line in text.splitlines():
        if line.startswith(name + " ") or line == name:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class RouteLabelTests(SynchronousTestCase):
    def test_routes_are_templates_not_raw_paths(self) -> None:
        """Labels stay bounded: a path is labelled with the template it matches, a variable
        part standing for one segment, its query ignored, and anything else is "other"."""
        route_of = route_labeller(["/things", "/things/{id}", "/a/{x}/b/{y}"])
        self.assertEqual(route_of(b"/things"), "/things")
        self.assertEqual(route_of(b"/things?x=1"), "/things")
        self.assertEqual(route_of(b"/things/65f1c0ffee0123456789abcd"), "/things/{id}")
        self.assertEqual(route_of(b"/a/1/b/2?c=/d"), "/a/{x}/b/{y}")
        for path in (b"/things/1/2", b"/a/1/b", b"/thing", b"things", b"/wp-admin/../../etc"):
            self.assertEqual(route_of(path), "other", path)

    def test_a_template_without_variables_comes_first(self) -> None:
        """A fixed path is labelled with its own template even when a template with a variable
        would match it too."""
        route_of = route_labeller(["/things/{id}", "/things/new"])
        self.assertEqual(route_of(b"/things/new"), "/things/new")
        self.assertEqual(route_of(b"/things/old"), "/things/{id}")

    def test_templates_are_not_patterns(self) -> None:
        """Characters a regular expression would read specially match only themselves."""
        route_of = route_labeller(["/openapi.json", "/a+/{id}"])
        self.assertEqual(route_of(b"/openapi.json"), "/openapi.json")
        self.assertEqual(route_of(b"/openapiXjson"), "other")
        self.assertEqual(route_of(b"/a+/1"), "/a+/{id}")
        self.assertEqual(route_of(b"/aa/1"), "other")

    def test_methods_are_a_short_list(self) -> None:
        """Known methods keep their name; any token a client makes up is "other", so random
        methods cannot multiply the request counter's series."""
        self.assertEqual(method_label(b"POST"), "POST")
        self.assertEqual(method_label(b"DELETE"), "DELETE")
        self.assertEqual(method_label(b"post"), "other")
        self.assertEqual(method_label(b"X-RANDOM-1234"), "other")


class MetricsAcrossWorkersTests(TestCase):
    timeout = 60

    async def test_requests_are_counted_across_two_workers(self) -> None:
        """With two worker processes, a scrape of either counts every request both served."""
        squad = await ready_squad_process(
            self, "squad_metrics", "--workers", "2", "--slow-min", "0.1", "--slow-max", "0.2"
        )
        sent = 20
        # A new connection each time: the kernel spreads them over both workers.
        await squad.post_many(sent)
        await sleep(1.5)  # gauges are sampled once a second
        scrape = await treq.get(squad.url + "/metrics", persistent=False)
        self.assertEqual(scrape.code, 200)
        text = (await scrape.content()).decode()
        self.assertEqual(
            sample(text, 'squad_http_requests_total{method="POST",route="/users",status="201"}'),
            sent,
        )
        self.assertEqual(sample(text, "squad_group_commit_batch_size_count"), sent)
        self.assertIn("squad_http_request_duration_seconds_bucket", text)
        self.assertIn("squad_slow_steps_in_memory", text)
