"""The live service answers as its own ``/openapi.json`` says, checked by schemathesis.

A real squad (``--allow-flush``, in this reactor) listens on an ephemeral 127.0.0.1 port against
the suite's database, in a database of this test's own (``DELETE /collections`` wipes it).
Schemathesis loads the schema over HTTP and, for every operation, sends requests it generates
from the schema (positive: valid by the schema; negative: broken on purpose, hostile strings
included), then runs all its checks on each answer: no 5xx, a documented status, the documented
content type and headers, a body that validates against the documented schema, valid data
accepted and invalid data refused. Scripted cases add what generation does not reach: a user
fetched by its id (200), an ``Idempotency-Key`` replayed and reused, a body over the limit
(413), a content type that is not JSON (415) and ``GET /openapi.json`` itself.

Schemathesis is synchronous (``requests``): it runs in a thread (``deferToThread``) while the
reactor serves it, so the HTTP between them is real. The number of examples is bounded so the
whole check takes a few seconds; a failure prints the seed to replay it with
``SQUAD_SCHEMATHESIS_SEED``.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, CheckFunction, GenerationMode, Response
from schemathesis.core.result import Err
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import positive_data_acceptance
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from squad.http.validation import MAX_BODY_BYTES
from tests.signups import VALID_SIGNUP
from tests.support import start_squad

#: Generated examples per operation and per mode (positive, negative). About 600 requests in all.
MAX_EXAMPLES = 60
#: The sign-up route gets more: it is where hostile bodies matter.
MAX_EXAMPLES_SIGNUP = 150


@dataclass
class LiveReport:
    """What the run sent and found: answers per (operation, status), failures by first line."""

    seed: int
    answers: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)
    unsatisfiable: list[str] = field(default_factory=list)


class _Checker:
    """Sends schemathesis cases to one base URL and records every check that fails."""

    def __init__(self, base_url: str, session: requests.Session, report: LiveReport) -> None:
        self.base_url = base_url
        self.session = session
        self.report = report
        # Idempotency-Key -> the exact body first sent with it, to recognise a legitimate 422.
        self.keys: dict[str, Any] = {}

    def check(self, case: Case[Any], **call: Any) -> Response:
        response = case.call(base_url=self.base_url, session=self.session, timeout=10, **call)
        self.report.answers[(case.operation.label, response.status_code)] += 1
        excluded: list[CheckFunction] = []
        if self._reused_key(case, response):
            # The contract's 422: a valid body under a key already used with another body. The
            # schema cannot say "valid unless this key was seen", so only the acceptance check
            # is waived; the 422's status, headers and body are still checked.
            excluded.append(positive_data_acceptance)
        try:
            case.validate_response(
                response,
                excluded_checks=excluded,
                headers=call.get("headers"),
                transport_kwargs={"base_url": self.base_url, "session": self.session},
            )
        except FailureGroup as failures:
            for failure in failures.exceptions:
                title = f"{case.operation.label}: {failure.title}"
                self.report.failures.setdefault(title, str(failures))
        return response

    def _reused_key(self, case: Case[Any], response: Response) -> bool:
        if case.operation.label != "POST /users":
            return False
        headers: Any = case.headers or {}
        key = headers.get("Idempotency-Key")
        if not isinstance(key, str):
            return False
        if response.status_code == 201:
            self.keys.setdefault(key, case.body)
            return False
        return (
            response.status_code == 422
            and key in self.keys
            and self.keys[key] != case.body
            and _error_code(response) == "idempotency_key_reused"
        )


def _error_code(response: Response) -> Any:
    try:
        return json.loads(response.content).get("error")
    except (ValueError, AttributeError):
        return None


def check_live_schema(base_url: str, seed_value: int) -> LiveReport:
    """Run schemathesis against ``base_url`` (blocking: call it from a thread)."""
    report = LiveReport(seed=seed_value)
    # An explicit default Config: no schemathesis.toml found on disk changes what runs.
    schema = schemathesis.openapi.from_url(
        f"{base_url}/openapi.json", config=schemathesis.Config(), timeout=10
    )
    with requests.Session() as session:
        checker = _Checker(base_url, session, report)
        for result in schema.get_all_operations():
            if isinstance(result, Err):
                raise result.err()
            operation = result.ok()
            examples = MAX_EXAMPLES_SIGNUP if operation.label == "POST /users" else MAX_EXAMPLES
            for mode in GenerationMode:
                _generate(checker, operation, mode, examples, seed_value)
        _scripted(checker, schema)
    return report


def _generate(
    checker: _Checker,
    operation: APIOperation[Any, Any, Any, Any],
    mode: GenerationMode,
    examples: int,
    seed_value: int,
) -> None:
    # No shrinking: every failure is recorded, never raised, so there is nothing to shrink.
    @seed(seed_value)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(generation_mode=mode))
    def send(case: Case[Any]) -> None:
        checker.check(case)

    try:
        send()
    except Unsatisfiable:
        # An operation without parameters or body has no invalid request to generate.
        checker.report.unsatisfiable.append(f"{operation.label} {mode.value}")


def _scripted(checker: _Checker, schema: Any) -> None:
    """The answers random generation does not reach, each still checked against the schema."""
    signup = schema["/users"]["POST"]
    get_user = schema["/users/{id}"]["GET"]

    key = f"live-{uuid.uuid4()}"
    first = checker.check(signup.Case(body=VALID_SIGNUP, headers={"Idempotency-Key": key}))
    replay = checker.check(signup.Case(body=VALID_SIGNUP, headers={"Idempotency-Key": key}))
    assert (first.status_code, first.content) == (replay.status_code, replay.content), (
        "a replayed Idempotency-Key must get the first answer again"
    )
    other = {**VALID_SIGNUP, "username": "someone.else"}
    checker.check(signup.Case(body=other, headers={"Idempotency-Key": key}))

    user_id = json.loads(first.content)["_id"]
    checker.check(get_user.Case(path_parameters={"id": user_id}))

    too_large = {**VALID_SIGNUP, "firstName": "A" * (MAX_BODY_BYTES + 1)}
    checker.check(signup.Case(body=too_large))
    checker.check(signup.Case(body=VALID_SIGNUP), headers={"Content-Type": "text/plain"})
    checker.check(schema["/openapi.json"]["GET"].Case())


def _seed() -> int:
    chosen = os.environ.get("SQUAD_SCHEMATHESIS_SEED")
    return int(chosen) if chosen else random.getrandbits(64)


class LiveSchemaTests(TestCase):
    """squad over real HTTP against its own OpenAPI document."""

    timeout = 120

    async def test_every_answer_conforms_to_the_schema(self) -> None:
        """
        Every route answers generated valid and hostile requests, and the scripted ones, with a
        documented status, content type, headers and body; never a 5xx.
        """
        squad = await start_squad(self, "--allow-flush", "--slow-min", "0.1", "--slow-max", "0.3")
        report: LiveReport = await deferToThread(check_live_schema, squad.url, _seed())

        self.assertEqual(
            report.failures,
            {},
            f"schemathesis found answers that do not match /openapi.json "
            f"(replay with SQUAD_SCHEMATHESIS_SEED={report.seed}):\n\n"
            + "\n".join(report.failures.values()),
        )
        # The run reached what it claims to check: each of these answers happened at least once.
        expected = {
            ("GET /health", 204),
            ("GET /ready", 204),
            ("POST /users", 201),
            ("POST /users", 400),
            ("POST /users", 413),
            ("POST /users", 415),
            ("POST /users", 422),
            ("GET /users/{id}", 200),
            ("GET /users/{id}", 400),
            ("GET /users/{id}", 404),
            ("DELETE /collections", 204),
            ("GET /metrics", 200),
            ("GET /openapi.json", 200),
        }
        self.assertEqual(expected - set(report.answers), set(), f"answers seen: {report.answers}")
        self.assertEqual(
            [status for (_, status) in report.answers if status >= 500], [], report.answers
        )
