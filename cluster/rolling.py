"""A rolling restart of ``bin/cluster``'s squad instances: what SIGHUP to ``bin/cluster`` does.

One instance at a time, never one fewer serving and at most one more (a surge of one):

1. its replacement starts on a new port and must answer ``GET /ready`` with 204;
2. nginx's upstream block is rewritten with the replacement's port instead of the old one and
   nginx reloads: its new workers never connect to the old instance, and its old workers finish
   the requests they hold, close their connections and exit;
3. once every old nginx worker has exited, nothing connects the old instance to nginx any more,
   and only then does it get SIGTERM: it stops listening, answers anything still in flight and
   hands its pending work back to the others at once;
4. the others must have taken that work over (within ``TAKEOVER_LIMIT`` seconds), and then
   ``SETTLE`` seconds pass before the next instance: hand-overs never pile up on a database
   that is slow to absorb them.

Why nginx first: nginx keeps idle keep-alive connections to every instance and may send a
request on one just as the instance, stopping, closes it; that request fails, and nginx must not
blindly resend a POST (it is not idempotent). An instance that nginx no longer holds a
connection to cannot lose a request that way.

A replacement that does not become ready, or an nginx that refuses its new configuration, stops
the restart: the replacement is stopped, and the old instance and every instance not yet
reached keep serving. Work that is not taken over in time stops it too, after that instance's
replacement took its place. The sequence is here, apart from the processes (``Instances``), so
that it can be tested with a fake.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

__all__ = [
    "DRAIN_LIMIT",
    "READY_LIMIT",
    "SETTLE",
    "STOP_GRACE",
    "TAKEOVER_LIMIT",
    "Instances",
    "Outcome",
    "RollingRestart",
    "StepFailed",
]

# A replacement that does not answer /ready 204 within this many seconds is given up on.
READY_LIMIT = 60.0
# nginx's old workers get worker_shutdown_timeout (10 s, in cluster.nginx) to finish; this
# leaves a margin over it before the restart stops, the old instance out of rotation but running.
DRAIN_LIMIT = 15.0
# SIGTERM, then SIGKILL after this: above squad's own stop (its request drain of up to 5 s, its
# workers' 8 s STOP_GRACE, the hand-over of pending work).
STOP_GRACE = 30.0
# The others take a stopped instance's work over at their next lease round (at most 5 s away)
# and then need the database's time; past this, the restart stops rather than stop another.
TAKEOVER_LIMIT = 60.0
# Between two instances (Kubernetes calls it minReadySeconds): the others adopt the stopped
# instance's work and the replacement warms up before the next start-up adds its own load.
SETTLE = 5.0

Replacement = TypeVar("Replacement")
Drain = TypeVar("Drain")


class StepFailed(Exception):
    """A step of the restart did not happen; the message says what, for the operator.
    ``replaced``: the instance's replacement had already taken its place."""

    def __init__(self, message: str, *, replaced: bool = False) -> None:
        super().__init__(message)
        self.replaced = replaced


class Instances(Protocol[Replacement, Drain]):
    """The processes a rolling restart works on (``cluster.processes.Cluster``, or a fake)."""

    def instance_names(self) -> list[str]:
        """The instances now, in order (an index below is a position in this list)."""

    def start_replacement(self, index: int) -> Replacement:
        """Start a new instance (on a port of its own) to take the place of ``index``."""

    def describe(self, index: int, replacement: Replacement | None = None) -> str:
        """How the log names instance ``index`` or ``replacement``: name, pid and port."""

    def wait_ready(self, replacement: Replacement, limit: float) -> None:
        """Return once it answers ``/ready`` 204; raise ``StepFailed`` after ``limit`` s or
        when it exits."""

    def discard(self, replacement: Replacement) -> None:
        """Stop a replacement that will not be used."""

    def route_to(self, index: int, replacement: Replacement) -> Drain:
        """Rewrite nginx's upstream block with ``replacement`` instead of ``index`` and
        reload nginx; raise ``StepFailed`` (nginx unchanged) when nginx refuses it."""

    def wait_drained(self, drain: Drain, limit: float) -> None:
        """Return once nginx's workers from before ``drain``'s reload have all exited; raise
        ``StepFailed`` after ``limit`` s."""

    def retire(self, index: int, replacement: Replacement, grace: float) -> bool:
        """SIGTERM instance ``index``, wait for it (SIGKILL after ``grace`` s) and put
        ``replacement`` in its place; True when it exited by itself."""

    def wait_taken_over(self, index: int, limit: float) -> None:
        """Return once the live processes have taken over the work that the instance just
        retired from ``index`` handed back; raise ``StepFailed`` after ``limit`` s."""


@dataclass(frozen=True)
class Outcome:
    """What a rolling restart did."""

    replaced: int
    instances: int
    seconds: float
    error: str | None = None

    @property
    def complete(self) -> bool:
        return self.error is None and self.replaced == self.instances


@dataclass
class RollingRestart(Generic[Replacement, Drain]):
    """Replaces every instance of ``instances`` in turn (see the module's docstring)."""

    instances: Instances[Replacement, Drain]
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    say: Callable[[str], None]
    ready_limit: float = READY_LIMIT
    drain_limit: float = DRAIN_LIMIT
    stop_grace: float = STOP_GRACE
    takeover_limit: float = TAKEOVER_LIMIT
    settle: float = SETTLE

    def run(self) -> Outcome:
        names = self.instances.instance_names()
        began = self.clock()
        self.say(f"rolling restart of {len(names)} instances, one at a time")
        for index in range(len(names)):
            if index and self.settle:
                self.say(f"{self.settle:g} s for the cluster to settle before {names[index]}")
                self.sleep(self.settle)
            try:
                self._replace(index)
            except StepFailed as error:
                seconds = self.clock() - began
                done = index + 1 if error.replaced else index
                serving = (
                    "its replacement and the instances after it"
                    if error.replaced
                    else f"{names[index]} and the instances after it"
                )
                self.say(
                    f"rolling restart stopped after {done} of {len(names)} instances "
                    f"({seconds:.1f} s): {error}; {serving} keep serving"
                )
                return Outcome(done, len(names), seconds, str(error))
        seconds = self.clock() - began
        self.say(f"rolling restart done: {len(names)} instances replaced in {seconds:.1f} s")
        return Outcome(len(names), len(names), seconds)

    def _replace(self, index: int) -> None:
        fleet = self.instances
        old = fleet.describe(index)
        began = self.clock()
        replacement = fleet.start_replacement(index)
        new = fleet.describe(index, replacement)
        self.say(f"{old}: starting its replacement {new}")
        try:
            fleet.wait_ready(replacement, self.ready_limit)
        except StepFailed as error:
            fleet.discard(replacement)
            raise StepFailed(f"the replacement {new} did not become ready: {error}") from None
        ready = self.clock()
        self.say(f"{new} ready in {ready - began:.1f} s")
        try:
            drain = fleet.route_to(index, replacement)
        except StepFailed as error:
            fleet.discard(replacement)
            raise StepFailed(f"nginx kept its configuration: {error}") from None
        routed = self.clock()
        self.say(f"nginx reloaded in {routed - ready:.1f} s: {new} in, {old} out")
        try:
            fleet.wait_drained(drain, self.drain_limit)
        except StepFailed as error:
            # The replacement serves; the old instance, out of rotation, is left running
            # rather than stopped with nginx perhaps still holding a connection to it.
            raise StepFailed(f"{old} not drained: {error}") from None
        drained = self.clock()
        self.say(f"{old} drained: nginx's old workers exited in {drained - routed:.1f} s")
        by_itself = fleet.retire(index, replacement, self.stop_grace)
        stopped = self.clock()
        how = "stopped (SIGTERM)" if by_itself else f"SIGKILLed after {self.stop_grace:g} s"
        self.say(f"{old} {how} in {stopped - drained:.1f} s")
        try:
            fleet.wait_taken_over(index, self.takeover_limit)
        except StepFailed as error:
            raise StepFailed(f"{old}'s work not taken over: {error}", replaced=True) from None
        taken = self.clock()
        self.say(
            f"{old}'s work taken over by the others in {taken - stopped:.1f} s; replaced in "
            f"{taken - began:.1f} s"
        )
