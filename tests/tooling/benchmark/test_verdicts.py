"""The report's verdicts on squad's performance targets, from a sweep's own figures."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from benchmark.figures import TargetResult
from benchmark.report.markdown import render_markdown
from benchmark.report.verdicts import verdicts
from tests.tooling.benchmark.fixtures import load_figures, sweep, target, verdicts_of


class VerdictTests(SynchronousTestCase):
    def test_every_target_met(self) -> None:
        """A squad at 0.8x the ceiling, with low latency, no failures and 2.67x Node meets every
        target, and each verdict states the measured figure it rests on."""
        judged = verdicts(
            sweep(
                target("squad", 2400, 12.0, 2400, 900),
                target("ceiling", 3000, 10.0, 3000, 700),
                target("reference-node", 600, 200, 900, 3000),
            )
        )
        self.assertEqual(len(judged), 7)
        self.assertTrue(all(verdict.met for verdict in judged), judged)
        measured = [verdict.measured for verdict in judged]
        self.assertIn("0.80x at 25, 0.80x at 1000", measured)
        self.assertIn("900 ms vs 700 ms: 1.29x", measured)
        self.assertIn("12.0 ms (the ceiling's: 10.0 ms)", measured)
        self.assertIn("4.00x reference-node at 25, 2.67x reference-node at 1000", measured)
        self.assertIn("350 MiB (3 processes)", measured)

    def test_shortfalls_are_named_with_their_size(self) -> None:
        """Below 0.7x the ceiling, a p99 over 15 ms at 25 connections, over 1.5x the ceiling's
        p99 at 1000 and under 1.6x Node: each is not met, with the ratio that misses and, for
        a ratio, how far short of the target it falls."""
        judged = verdicts_of(
            target("squad", 900, 78.0, 1400, 2100),
            target("ceiling", 3000, 28.0, 3300, 700),
            target("reference-node", 600, 200, 1000, 8000),
        )
        expected = {
            "requests/s at least 0.7x the bare-Klein ceiling at every level": (
                "0.30x at 25 (57% short), 0.42x at 1000 (39% short)"
            ),
            "p99 at 25 connections under 15 ms": "78.0 ms (the ceiling's: 28.0 ms)",
            "p99 at 1000 connections at most 1.5x the ceiling's": "2,100 ms vs 700 ms: 3.00x",
            "requests/s at least 1.6x the better Node reference's (one process or one per core)"
            " at every level": (
                "1.50x reference-node at 25 (6% short), 1.40x reference-node at 1000 (13% short)"
            ),
        }
        self.assertEqual(
            {name: judged[name] for name in expected},
            {name: (False, measured) for name, measured in expected.items()},
        )

    def test_failures_memory_and_losses(self) -> None:
        """Any failed request at any level, RSS over 400 MB or a lost user is not met."""
        squad = target("squad", 2400, 12.0, 2400, 900)
        heavy = squad.levels[1]
        failing = load_figures(1000, 2400, 900, 10_000, timeouts=3)
        levels = [
            squad.levels[0],
            type(heavy)(**{**heavy.__dict__, "load": failing, "service_rss_mb": 420.0}),
        ]
        lost = type(heavy.check)("FAIL", "9,000 users stored for 10,000 2xx answers", 9_000)
        levels[0] = type(heavy)(**{**levels[0].__dict__, "check": lost})
        judged = verdicts_of(TargetResult("squad", "s", "u", levels))
        self.assertEqual(
            judged["0 non-2xx, errors and timeouts at every level"], (False, "0 at 25, 3 at 1000")
        )
        self.assertEqual(
            judged["service RSS under 400 MB after the 1000-connection run"],
            (False, "420 MiB (3 processes)"),
        )
        self.assertEqual(
            judged["every 2xx stored (nothing lost)"], (False, "FAIL at 25, PASS at 1000")
        )

    def test_targets_without_their_comparison_are_left_out(self) -> None:
        """Without the ceiling or the Node reference in the sweep, the verdicts that need them
        are not given; without squad there are none at all."""
        judged = verdicts(sweep(target("squad", 2400, 12.0, 2400, 900)))
        names = [verdict.target for verdict in judged]
        self.assertFalse(any("ceiling" in name or "Node" in name for name in names), names)
        self.assertIn("p99 at 25 connections under 15 ms", names)
        self.assertEqual(verdicts(sweep(target("baseline", 2, 9000, 60, 9900))), [])

    def test_report_has_the_verdict_table(self) -> None:
        """report.md carries the verdicts as a table, a shortfall in bold."""
        text = render_markdown(
            sweep(
                target("squad", 900, 78.0, 1400, 2100),
                target("ceiling", 3000, 28.0, 3300, 700),
            ),
            [],
        )
        section = text.split("## Against the targets", 1)[1].split("## ", 1)[0]
        self.assertIn("| target | measured | verdict |", section)
        self.assertIn(
            "| p99 at 25 connections under 15 ms | 78.0 ms (the ceiling's: 28.0 ms) |"
            " **not met** |",
            section,
        )
        self.assertIn(
            "| every 2xx stored (nothing lost) | PASS at 25, PASS at 1000 | met |", section
        )
