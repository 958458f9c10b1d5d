"""The HTTP API's logic, in memory: Klein routes over ``SquadSite`` through ``StubTreq``, a fake
store, a slow step driven by hand and a ``Clock`` for every deadline."""

from __future__ import annotations

import json
import re
from typing import Any

from bson import ObjectId
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from squad.http.errors import RETRY_AFTER_SECONDS
from squad.http.idempotency import IDEMPOTENCY_WINDOW_SECONDS
from squad.http.routes import ROUTE_TEMPLATES, SignupActivity, path_template, route_of
from squad.http.site import SquadSite
from squad.metrics import SquadMetrics
from squad.storage.documents import bson_now
from squad.storage.store import UNOWNED
from tests.fakes import OWNER, START, Squad, error_body
from tests.signups import USER_FIELDS, VALID_PASSWORD, VALID_SIGNUP

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
START_ISO = "2023-11-14T22:13:20.000Z"


class APITestCase(SynchronousTestCase):
    """Helpers to send requests to a ``Squad`` on fakes and read the answers."""

    def setUp(self) -> None:
        self.squad = Squad()

    def answer(self, request: Deferred[Any]) -> Any:
        """The response to ``request``, after running what is due now."""
        self.squad.settle()
        return self.successResultOf(request)

    def body(self, response: Any) -> bytes:
        content: bytes = self.successResultOf(response.content())
        return content

    def json(self, response: Any) -> Any:
        return json.loads(self.body(response))

    def header(self, response: Any, name: str) -> list[str]:
        values: list[str] = response.headers.getRawHeaders(name, [])
        return values

    def assert_error(
        self,
        response: Any,
        status: int,
        code: str,
        field: str | None = None,
    ) -> dict[str, Any]:
        """The response is the contract's JSON error with this status and code."""
        self.assertEqual(response.code, status)
        self.assertEqual(self.header(response, "content-type"), ["application/json"])
        error = error_body(self.body(response))
        self.assertEqual(error["error"], code, error)
        if field is not None:
            self.assertEqual(error.get("field"), field, error)
        if status == 503:
            self.assertEqual(self.header(response, "retry-after"), [str(RETRY_AFTER_SECONDS)])
        return error

    def sign_up(self, body: dict[str, Any] | None = None, **headers: str) -> Any:
        """POST a sign-up and return the 201 response's JSON."""
        raw = {name.replace("_", "-").encode(): [value.encode()] for name, value in headers.items()}
        response = self.answer(self.squad.post_users(body or VALID_SIGNUP, headers=raw))
        self.assertEqual(response.code, 201, self.body(response))
        return self.json(response)


class CreateUserTests(APITestCase):
    def test_created_answer_has_location_and_the_contract_shape(self) -> None:
        """POST /users answers 201, Location /users/<_id>, and exactly the contract's fields."""
        response = self.answer(self.squad.post_users(VALID_SIGNUP))
        self.assertEqual(response.code, 201)
        self.assertEqual(self.header(response, "content-type"), ["application/json"])
        user = self.json(response)
        self.assertEqual(set(user), USER_FIELDS)
        self.assertRegex(user["_id"], r"^[0-9a-f]{24}$")
        self.assertEqual(self.header(response, "location"), [f"/users/{user['_id']}"])
        for name in ("firstName", "lastName", "email", "username"):
            self.assertEqual(user[name], VALID_SIGNUP[name])
        self.assertIs(user["processed"], False)
        self.assertRegex(user["date_created"], ISO_UTC)
        self.assertEqual(user["date_created"], START_ISO)
        self.assertEqual(user["date_updated"], user["date_created"])

    def test_answer_holds_no_password_nor_any_form_of_it(self) -> None:
        """Neither the password, its seal nor a hash appears in the 201 answer."""
        response = self.answer(self.squad.post_users(VALID_SIGNUP))
        content = self.body(response)
        self.assertNotIn(VALID_PASSWORD.encode(), content)
        for word in (b"password", b"hash", b"sealed", b"argon2"):
            self.assertNotIn(word, content.lower())

    def test_stored_user_matches_the_answer_and_its_work_is_pending(self) -> None:
        """The store receives the answered user (with BSON dates) and its work: one batch
        document owned by this process, with its id and its password only in sealed form,
        queued for this process's hasher and recording its slow step too (no pending
        document)."""
        user = self.sign_up()
        oid = ObjectId(user["_id"])
        stored = self.squad.store.user_docs[oid]
        self.assertEqual(stored["email"], VALID_SIGNUP["email"])
        self.assertEqual(stored["date_created"], bson_now(START))
        self.assertNotIn("password", stored)
        self.assertEqual(self.squad.store.pending_docs, {})
        (sealed,) = self.squad.store.sealed_docs.values()
        self.assertEqual((sealed["owner"], sealed["users"]), (OWNER, [oid]))
        self.assertNotIn(VALID_PASSWORD.encode(), sealed["sealed"][0])
        self.assertEqual(
            self.squad.sealer.unseal(sealed["sealed"][0], associated=oid.binary), VALID_PASSWORD
        )
        self.assertEqual(self.squad.hasher.backlog, 1)

    def test_email_domain_is_answered_lowercased(self) -> None:
        """The answer holds the normalised email (domain lowercased), as stored."""
        user = self.sign_up({**VALID_SIGNUP, "email": "Ada@Example.COM"})
        self.assertEqual(user["email"], "Ada@example.com")

    def test_answer_waits_for_the_database_acknowledgement(self) -> None:
        """201 is sent only once the store acknowledged the write, never before."""
        self.squad.store.make_hang("insert_signups")
        request = self.squad.post_users(VALID_SIGNUP)
        self.squad.settle()
        self.assertNoResult(request)
        self.squad.clock.advance(1.5)
        self.squad.http.flush()
        self.assertNoResult(request)
        self.squad.store.hung("insert_signups")[0].callback(None)
        response = self.answer(request)
        self.assertEqual(response.code, 201)

    def test_slow_step_starts_only_after_the_answer_is_written(self) -> None:
        """The slow step is not started while the request is handled: it starts once the
        201 has been written and the request finished, and it is not the handler's work."""
        squad = self.squad
        finished_when_called: list[list[int]] = []
        squad.verification.on_call = lambda user_id: finished_when_called.append(
            [request.finished for request in squad.requests]
        )
        squad.store.make_hang("insert_signups")
        request = squad.post_users(VALID_SIGNUP)
        squad.settle()
        self.assertEqual(squad.verification.calls, [])
        squad.store.hung("insert_signups")[0].callback(None)
        response = self.answer(request)
        self.assertEqual(response.code, 201)
        self.assertEqual(finished_when_called, [[1]])
        self.assertEqual(squad.verification.calls, [ObjectId(self.json(response)["_id"])])
        # The step itself is still running: the answer did not wait for it.
        self.assertNoResult(squad.verification.waiting[0])
        self.assertEqual(squad.slow_work.running_steps, 1)

    def test_slow_step_then_marks_the_user_processed(self) -> None:
        """Once the slow step succeeds the user becomes processed, with date_updated the
        moment that result was written (the finish writer's next round)."""
        user = self.sign_up()
        self.squad.clock.advance(7)
        self.squad.verification.succeed()
        self.squad.clock.advance(self.squad.writer.interval)
        fetched = self.json(self.answer(self.squad.request("GET", f"/users/{user['_id']}")))
        self.assertIs(fetched["processed"], True)
        self.assertEqual(fetched["date_created"], user["date_created"])
        self.assertEqual(fetched["date_updated"], "2023-11-14T22:13:27.200Z")

    def test_client_gone_before_the_answer_still_gets_its_user_processed(self) -> None:
        """A client that disconnects while its write is in flight gets no answer, but the
        write goes on and the stored user's slow step starts all the same."""
        squad = self.squad
        squad.store.make_hang("insert_signups")
        site = SquadSite(squad.api.app.resource(), reactor=squad.clock)
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        channel.makeConnection(transport)
        payload = json.dumps(VALID_SIGNUP).encode()
        channel.dataReceived(
            b"POST /users HTTP/1.1\r\nHost: squad.test\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
        )
        squad.clock.advance(0)
        self.assertEqual(squad.api.waiting, 1)
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(squad.api.waiting, 0)
        self.assertEqual(squad.verification.calls, [])
        squad.store.hung("insert_signups")[0].callback(None)
        (stored,) = squad.store.user_docs
        self.assertEqual(squad.verification.calls, [stored])
        self.assertEqual(transport.value(), b"")

    def test_store_failure_answers_503_and_starts_nothing(self) -> None:
        """A write the store fails answers 503 with Retry-After; no slow step, slot freed."""
        self.squad.store.make_fail("insert_signups")
        response = self.answer(self.squad.post_users(VALID_SIGNUP))
        self.assert_error(response, 503, "database_unavailable")
        self.assertEqual(self.squad.store.user_docs, {})
        self.assertEqual(self.squad.verification.calls, [])
        self.assertEqual(self.squad.slow_work.held, 0)
        self.assertEqual(self.squad.api.waiting, 0)

    def test_one_refused_document_fails_only_its_own_request(self) -> None:
        """When the store refuses one sign-up of a batch, that request gets 503 and the others
        of the same batch get 201."""
        squad = self.squad
        squad.store.refuse = lambda user: user["username"] == "charles"
        first = squad.post_users(VALID_SIGNUP)
        second = squad.post_users({**VALID_SIGNUP, "username": "charles"})
        self.assertEqual(self.answer(first).code, 201)
        self.assert_error(self.answer(second), 503, "database_unavailable")
        self.assertEqual(squad.store.called("insert_signups"), 1)  # one batch for both
        self.assertEqual(len(squad.store.user_docs), 1)
        self.assertEqual(len(squad.verification.calls), 1)
        self.assertEqual(squad.slow_work.held, 1)

    def test_hanging_store_answers_503_after_the_write_deadline(self) -> None:
        """A store that never answers makes POST /users answer 503 with Retry-After once the
        write deadline passes (not before), with nothing reported as saved."""
        squad = Squad(write_deadline=2.0)
        self.squad = squad
        squad.store.make_hang("insert_signups")
        request = squad.post_users(VALID_SIGNUP)
        squad.settle()
        squad.clock.advance(1.99)
        squad.http.flush()
        self.assertNoResult(request)
        squad.clock.advance(0.01)
        squad.http.flush()
        response = self.successResultOf(request)
        error = self.assert_error(response, 503, "database_unavailable")
        self.assertNotIn("_id", error)
        self.assertEqual(self.header(response, "location"), [])
        self.assertEqual(squad.store.user_docs, {})
        self.assertEqual(squad.verification.calls, [])
        self.assertEqual(squad.api.waiting, 0)

    def test_signup_still_queued_at_its_deadline_is_never_written(self) -> None:
        """A sign-up that waited in the group commit's queue past its deadline is answered 503
        and dropped unwritten, even when the database comes back afterwards."""
        squad = Squad(commit_concurrency=1)
        self.squad = squad
        squad.store.make_hang("insert_signups")
        first = squad.post_users(VALID_SIGNUP)
        squad.settle()  # the first batch is in flight, and hangs
        second = squad.post_users({**VALID_SIGNUP, "username": "queued"})
        squad.settle()  # the second waits for the only write slot
        squad.clock.advance(squad.api.write_deadline)
        squad.http.flush()
        self.assert_error(self.successResultOf(first), 503, "database_unavailable")
        self.assert_error(self.successResultOf(second), 503, "database_unavailable")
        squad.store.heal()
        squad.store.hung("insert_signups")[0].callback(None)
        squad.settle()
        usernames = [user["username"] for user in squad.store.user_docs.values()]
        self.assertNotIn("queued", usernames)
        self.assertEqual(squad.store.called("insert_signups"), 1)
        self.assertEqual(squad.slow_work.held, len(usernames))

    def test_write_acknowledged_after_its_503_still_gets_its_slow_step(self) -> None:
        """If a write the client was told had failed is acknowledged late, the stored user
        is not orphaned: its slow step runs, so it still reaches processed."""
        squad = self.squad
        squad.store.make_hang("insert_signups")
        request = squad.post_users(VALID_SIGNUP)
        squad.settle()
        squad.clock.advance(squad.api.write_deadline)
        squad.http.flush()
        self.assert_error(self.successResultOf(request), 503, "database_unavailable")
        squad.store.hung("insert_signups")[0].callback(None)
        (stored,) = squad.store.user_docs
        self.assertEqual(squad.verification.calls, [stored])

    def test_overload_sheds_at_once_with_503_and_retry_after(self) -> None:
        """With max_waiting requests already waiting on the database, the next POST /users is
        answered 503 overloaded with Retry-After at once, without reaching the store."""
        squad = Squad(max_waiting=1)
        self.squad = squad
        squad.store.make_hang("insert_signups")
        first = squad.post_users(VALID_SIGNUP)
        squad.settle()
        self.assertEqual(squad.api.waiting, 1)
        second = squad.post_users({**VALID_SIGNUP, "username": "shed"})
        squad.http.flush()  # no clock advance: the answer must not wait for anything
        self.assert_error(self.successResultOf(second), 503, "overloaded")
        self.assertEqual(squad.shed, 1)
        self.assertEqual(squad.store.called("insert_signups"), 1)
        squad.store.heal()
        squad.store.hung("insert_signups")[0].callback(None)
        self.assertEqual(self.answer(first).code, 201)
        # Once the first is answered there is room again.
        self.assertEqual(squad.api.waiting, 0)
        self.assertEqual(self.answer(squad.post_users(VALID_SIGNUP)).code, 201)

    def test_signups_beyond_capacity_are_stored_unowned(self) -> None:
        """When this process holds as much work as it may, a new sign-up is still accepted
        but its slow step is left to the pool (owner "") and does not start here."""
        squad = Squad(capacity=1)
        self.squad = squad
        first = self.sign_up()
        second = self.sign_up({**VALID_SIGNUP, "username": "overflow"})
        # Overflow alone gets a pending document: the first is recorded by its passwords'.
        owners = {
            user_id: doc["owner"]
            for doc in squad.store.pending_docs.values()
            for user_id in doc["users"]
        }
        self.assertEqual(owners, {ObjectId(second["_id"]): UNOWNED})
        # Its password is hashed here all the same: only the slow step waits for adoption.
        self.assertEqual(
            squad.store.sealed_users(), {ObjectId(first["_id"]), ObjectId(second["_id"])}
        )
        self.assertEqual(squad.hasher.backlog, 2)
        self.assertEqual(squad.verification.calls, [ObjectId(first["_id"])])

    def test_invalid_body_answers_400_and_stores_nothing(self) -> None:
        """A refused sign-up is answered with the JSON error and never reaches the store."""
        response = self.answer(self.squad.post_users({**VALID_SIGNUP, "email": "nope"}))
        self.assert_error(response, 400, "invalid_email", "email")
        self.assertEqual(self.squad.store.calls, [])
        self.assertEqual(self.squad.slow_work.held, 0)


class IdempotencyKeyTests(APITestCase):
    def test_retry_with_the_same_key_answers_the_first_user_and_creates_nothing(self) -> None:
        """A retry with the same Idempotency-Key and body answers the first 201 again."""
        first = self.answer(self.squad.post_users(VALID_SIGNUP, headers=KEY))
        self.assertEqual(first.code, 201)
        self.squad.clock.advance(60)
        again = self.answer(self.squad.post_users(VALID_SIGNUP, headers=KEY))
        self.assertEqual(again.code, 201)
        self.assertEqual(self.body(again), self.body(first))
        self.assertEqual(self.header(again, "location"), self.header(first, "location"))
        self.assertEqual(len(self.squad.store.user_docs), 1)
        self.assertEqual(len(self.squad.verification.calls), 1)

    def test_same_key_with_another_body_answers_422(self) -> None:
        """The same Idempotency-Key with a different sign-up is refused with 422."""
        self.assertEqual(self.answer(self.squad.post_users(VALID_SIGNUP, headers=KEY)).code, 201)
        other = {**VALID_SIGNUP, "password": "another password entirely"}
        response = self.answer(self.squad.post_users(other, headers=KEY))
        self.assert_error(response, 422, "idempotency_key_reused", "Idempotency-Key")
        self.assertEqual(len(self.squad.store.user_docs), 1)

    def test_key_is_forgotten_after_24_hours(self) -> None:
        """After the 24-hour window the same key creates a new user."""
        first = self.sign_up(idempotency_key="k-1")
        self.squad.clock.advance(IDEMPOTENCY_WINDOW_SECONDS + 1)
        second = self.sign_up(idempotency_key="k-1")
        self.assertNotEqual(first["_id"], second["_id"])
        self.assertEqual(len(self.squad.store.user_docs), 2)

    def test_malformed_keys_answer_400(self) -> None:
        """An empty, over-long or non-printable Idempotency-Key is refused; nothing stored."""
        for key in (b"", b"k" * 256, b"caf\xc3\xa9", b"tab\there"):
            response = self.answer(
                self.squad.post_users(VALID_SIGNUP, headers={b"Idempotency-Key": [key]})
            )
            self.assert_error(response, 400, "invalid_idempotency_key", "Idempotency-Key")
        self.assertEqual(self.squad.store.calls, [])

    def test_retry_after_a_failed_write_writes_the_recorded_user(self) -> None:
        """When the first try recorded its answer but its write failed, the retry stores the
        user under the recorded id and answers the recorded body."""
        squad = self.squad
        squad.store.make_fail("insert_signups", times=1)
        failed = self.answer(squad.post_users(VALID_SIGNUP, headers=KEY))
        self.assert_error(failed, 503, "database_unavailable")
        self.assertEqual(squad.store.user_docs, {})
        (record,) = squad.store.idempotency_docs.values()
        squad.clock.advance(5)
        again = self.answer(squad.post_users(VALID_SIGNUP, headers=KEY))
        self.assertEqual(again.code, 201)
        self.assertEqual(self.body(again), record["response"])
        self.assertEqual(list(squad.store.user_docs), [record["user_id"]])
        self.assertEqual(squad.store.user_docs[record["user_id"]]["date_created"], bson_now(START))

    def test_retry_racing_the_first_write_waits_for_its_answer(self) -> None:
        """A retry that arrives while the first try's write is still in flight waits for it
        and gets the same 201: one user is stored and one slow step runs, never a 503."""
        squad = self.squad
        squad.store.make_hang("insert_signups")
        first = squad.post_users(VALID_SIGNUP, headers=KEY)
        squad.settle()
        squad.store.heal()
        retry = squad.post_users(VALID_SIGNUP, headers=KEY)
        squad.settle()
        squad.clock.advance(0.5)
        squad.http.flush()
        self.assertNoResult(retry)
        squad.store.hung("insert_signups")[0].callback(None)
        squad.settle()
        squad.clock.advance(0.05)
        squad.settle()
        (record,) = squad.store.idempotency_docs.values()
        for response in (self.successResultOf(first), self.successResultOf(retry)):
            self.assertEqual(response.code, 201)
            self.assertEqual(self.body(response), record["response"])
        self.assertEqual(list(squad.store.user_docs), [record["user_id"]])
        self.assertEqual(squad.verification.calls, [record["user_id"]])
        self.assertEqual(squad.slow_work.held, 1)

    def test_concurrent_duplicates_store_one_user_and_all_get_its_answer(self) -> None:
        """Thirty requests with one Idempotency-Key at once store one user, and every one of
        them is answered that user's 201."""
        squad = self.squad
        requests = [squad.post_users(VALID_SIGNUP, headers=KEY) for _ in range(30)]
        for _ in range(5):
            squad.settle()
            squad.clock.advance(0.05)
        answers = [self.successResultOf(request) for request in requests]
        self.assertEqual({response.code for response in answers}, {201})
        self.assertEqual(len({self.body(response) for response in answers}), 1)
        self.assertEqual(len(squad.store.user_docs), 1)
        self.assertEqual(len(squad.verification.calls), 1)

    def test_a_retry_gets_409_while_the_first_is_still_unknown_at_its_deadline(self) -> None:
        """When the first request's write is still unanswered as the retry's own deadline
        nears, the retry gets a 409 request_in_progress (no user stored by it), not a 503."""
        squad = self.squad
        squad.store.make_hang("insert_signups")
        squad.post_users(VALID_SIGNUP, headers=KEY)
        squad.settle()
        squad.clock.advance(0.2)
        squad.store.heal()
        retry = squad.post_users(VALID_SIGNUP, headers=KEY)
        squad.settle()
        for _ in range(40):
            squad.clock.advance(0.05)
            squad.http.flush()
        response = self.successResultOf(retry)
        self.assert_error(response, 409, "request_in_progress", "Idempotency-Key")
        self.assertEqual(squad.store.called("insert_signups"), 1)

    def test_keyed_signup_answers_503_within_the_write_deadline_on_a_hanging_store(
        self,
    ) -> None:
        """With an Idempotency-Key, a store that does not answer still gets the client a 503
        once the write deadline passes, as without a key: a request never hangs."""
        squad = self.squad
        squad.store.make_hang("find_idempotency_record")
        request = squad.post_users(VALID_SIGNUP, headers=KEY)
        squad.settle()
        squad.clock.advance(squad.api.write_deadline)
        squad.http.flush()
        self.assert_error(self.successResultOf(request), 503, "database_unavailable")


KEY = {b"Idempotency-Key": [b"3f2b9c1e-retry-me"]}


class GetUserTests(APITestCase):
    def test_get_answers_the_same_shape_as_the_creation(self) -> None:
        """GET /users/<_id> answers 200 with exactly the body POST answered."""
        created = self.sign_up()
        response = self.answer(self.squad.request("GET", f"/users/{created['_id']}"))
        self.assertEqual(response.code, 200)
        self.assertEqual(self.header(response, "content-type"), ["application/json"])
        self.assertEqual(self.json(response), created)

    def test_get_shows_processed_as_it_stands_and_never_the_hash(self) -> None:
        """A processed, hashed user is answered processed: true, without its hash."""
        oid = self.squad.store.seed_user(processed=True, password_hash="$argon2id$v=19$x")
        response = self.answer(self.squad.request("GET", f"/users/{oid}"))
        self.assertEqual(response.code, 200)
        user = self.json(response)
        self.assertEqual(set(user), USER_FIELDS)
        self.assertIs(user["processed"], True)
        self.assertNotIn(b"argon2", self.body(response))

    def test_unknown_id_answers_404(self) -> None:
        """An id nobody has is answered 404 user_not_found."""
        response = self.answer(self.squad.request("GET", f"/users/{ObjectId()}"))
        self.assert_error(response, 404, "user_not_found")

    def test_malformed_ids_answer_400(self) -> None:
        """Anything but 24 hexadecimal digits is answered 400 invalid_id, without a lookup."""
        for bad in (
            "not-an-id",
            "z" * 24,
            "a" * 23,
            "a" * 25,
            "%C3%A9" * 24,
            "0x" + "a" * 22,
            " " + "a" * 23,
            "%00" * 24,
        ):
            response = self.answer(self.squad.request("GET", f"/users/{bad}"))
            self.assert_error(response, 400, "invalid_id", "_id")
        self.assertEqual(self.squad.store.calls, [])

    def test_uppercase_hex_finds_the_user(self) -> None:
        """Hex digits are case-insensitive: the uppercase spelling finds the same user."""
        created = self.sign_up()
        response = self.answer(self.squad.request("GET", f"/users/{created['_id'].upper()}"))
        self.assertEqual(response.code, 200)
        self.assertEqual(self.json(response)["_id"], created["_id"])

    def test_store_failure_answers_503(self) -> None:
        """A lookup the store fails answers 503 with Retry-After."""
        self.squad.store.make_fail("find_user")
        response = self.answer(self.squad.request("GET", f"/users/{ObjectId()}"))
        self.assert_error(response, 503, "database_unavailable")


class DeleteCollectionsTests(APITestCase):
    def test_without_allow_flush_it_is_not_there(self) -> None:
        """Without allow_flush, DELETE /collections answers 404 and touches nothing."""
        self.sign_up()
        response = self.answer(self.squad.request("DELETE", "/collections"))
        self.assert_error(response, 404, "not_found")
        self.assertEqual(self.squad.store.called("delete_everything"), 0)
        self.assertEqual(len(self.squad.store.user_docs), 1)
        self.assertEqual(self.squad.slow_work.held, 1)

    def test_with_allow_flush_it_deletes_everything_and_drops_the_work(self) -> None:
        """With allow_flush, DELETE /collections answers 204 once the store is emptied, and the
        in-memory slow work is dropped: steps cancelled, nothing left to write."""
        squad = Squad(allow_flush=True)
        self.squad = squad
        user = self.sign_up()
        self.sign_up({**VALID_SIGNUP, "username": "second"})
        squad.verification.fail(RuntimeError("verifier down"), index=0)
        self.assertGreater(squad.writer.backlog, 0)
        self.assertEqual(squad.slow_work.running_steps, 2)
        response = self.answer(squad.request("DELETE", "/collections"))
        self.assertEqual(response.code, 204)
        self.assertEqual(self.body(response), b"")
        self.assertEqual(squad.store.user_docs, {})
        self.assertEqual(squad.store.pending_docs, {})
        self.assertEqual(squad.slow_work.held, 0)
        self.assertEqual(squad.slow_work.running_steps, 0)
        self.assertEqual(squad.writer.backlog, 0)
        self.assertTrue(squad.verification.waiting[1].called)
        # Nothing of the dropped work comes back later: no retry, no write.
        squad.clock.advance(60)
        self.assertEqual(len(squad.verification.calls), 2)
        self.assertEqual(squad.store.called("apply_finishes"), 0)
        self.assertEqual(self.squad.store.user_docs.get(ObjectId(user["_id"])), None)

    def test_store_failure_answers_503_and_keeps_the_work(self) -> None:
        """If the store cannot delete, DELETE /collections answers 503 and drops nothing."""
        squad = Squad(allow_flush=True)
        self.squad = squad
        self.sign_up()
        squad.store.make_fail("delete_everything")
        response = self.answer(squad.request("DELETE", "/collections"))
        self.assert_error(response, 503, "database_unavailable")
        self.assertEqual(squad.slow_work.held, 1)
        self.assertEqual(len(squad.store.user_docs), 1)


class HealthTests(APITestCase):
    def test_health_answers_204_even_with_the_database_down(self) -> None:
        """/health answers 204 while the process serves, without asking the database."""
        self.squad.store.make_fail("ping")
        response = self.answer(self.squad.request("GET", "/health"))
        self.assertEqual(response.code, 204)
        self.assertEqual(self.body(response), b"")
        self.assertEqual(self.squad.store.calls, [])

    def test_ready_answers_204_when_the_database_answers(self) -> None:
        """/ready answers 204 when the store's ping succeeds."""
        response = self.answer(self.squad.request("GET", "/ready"))
        self.assertEqual(response.code, 204)
        self.assertEqual(self.squad.store.called("ping"), 1)

    def test_ready_answers_503_when_the_database_does_not(self) -> None:
        """/ready answers 503 (JSON, Retry-After) when the store's ping fails."""
        self.squad.store.make_fail("ping")
        response = self.answer(self.squad.request("GET", "/ready"))
        self.assert_error(response, 503, "database_unavailable")


class RoutingTests(APITestCase):
    def test_unknown_route_answers_404_json(self) -> None:
        """An address the API does not have answers 404 with a JSON error."""
        for path in ("/nope", "/users/a/b", "/health/", "/"):
            response = self.answer(self.squad.request("GET", path))
            self.assert_error(response, 404, "not_found")

    def test_wrong_method_answers_405_json_with_allow(self) -> None:
        """A known address with a method it does not take answers 405, JSON, and Allow."""
        cases = [
            ("GET", "/users", {"POST"}),
            ("PUT", "/users", {"POST"}),
            ("POST", "/health", {"GET", "HEAD"}),
            ("DELETE", "/ready", {"GET", "HEAD"}),
            ("DELETE", f"/users/{ObjectId()}", {"GET", "HEAD"}),
        ]
        for method, path, allowed in cases:
            response = self.answer(self.squad.request(method, path))
            error = self.assert_error(response, 405, "method_not_allowed")
            self.assertIn(method, error["message"])
            (allow,) = self.header(response, "allow")
            self.assertEqual({name.strip() for name in allow.split(",")}, allowed, path)
        self.assertEqual(self.squad.store.calls, [])


class RouteLabelTests(APITestCase):
    """The metric label of a request path comes from the Klein routes themselves."""

    def test_templates_are_the_klein_routes(self) -> None:
        """Every Klein rule gives one template, its variable written {id} as in the OpenAPI
        document, in the order the routes are declared."""
        self.assertEqual(
            ROUTE_TEMPLATES,
            (
                "/health",
                "/ready",
                "/users",
                "/users/{id}",
                "/metrics",
                "/openapi.json",
                "/collections",
            ),
        )
        self.assertEqual(path_template("/users/<user_id>"), "/users/{id}")
        self.assertEqual(path_template("/a/<int:n>/b/<x>"), "/a/{id}/b/{id}")

    def test_labels_of_known_and_unknown_paths(self) -> None:
        """Each path is labelled with its route's template, its query ignored and an id in
        any form collapsed into {id}; anything else, near misses included, is "other"."""
        labels = {
            b"/health": "/health",
            b"/ready": "/ready",
            b"/users": "/users",
            b"/users?x=1": "/users",
            b"/users/65f1c0ffee0123456789abcd": "/users/{id}",
            b"/users/abc?x=1/2": "/users/{id}",
            b"/users/a%2Fb": "/users/{id}",
            b"/users/\xff": "/users/{id}",
            b"/users/": "/users/{id}",
            b"/metrics": "/metrics",
            b"/openapi.json": "/openapi.json",
            b"/collections": "/collections",
        }
        for path, label in labels.items():
            self.assertEqual(route_of(path), label, path)
        for path in (
            b"",
            b"/",
            b"health",
            b"/HEALTH",
            b"/health/",
            b"/collections/",
            b"//users",
            b"/users//",
            b"/users/abc/",
            b"/users/abc/def",
            b"/nope",
            b"?/users",
            b"/wp-admin/../../etc",
        ):
            self.assertEqual(route_of(path), "other", path)

    def test_site_counts_requests_by_route(self) -> None:
        """The site labels each answered request with its route's template, not its path."""
        from prometheus_client import REGISTRY

        site = self.squad.http.site
        assert isinstance(site, SquadSite)
        site.metrics = SquadMetrics.get()
        labels = {"method": "GET", "route": "/users/{id}", "status": "404"}

        def count() -> float:
            return REGISTRY.get_sample_value("squad_http_requests_total", labels) or 0.0

        before = count()
        response = self.answer(self.squad.request("GET", f"/users/{ObjectId()}"))
        self.assertEqual(response.code, 404)
        self.assertEqual(count(), before + 1)


class FramingTests(APITestCase):
    """Every answer as bytes on the wire, through ``SquadSite`` on a ``StringTransport``."""

    def exchange(self, request: bytes) -> tuple[list[bytes], bytes]:
        """Send one raw request and run what is due; the answer's status line and header
        lines (lowercased), and its body."""
        site = SquadSite(self.squad.api.app.resource(), reactor=self.squad.clock)
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50010))
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(request)
        for _ in range(3):
            self.squad.clock.advance(0)
        head, _, content = transport.value().partition(b"\r\n\r\n")
        return head.lower().split(b"\r\n"), content

    def test_every_answer_has_a_content_length_and_names_no_server(self) -> None:
        """201, 200, 204, 400, 404, 405 and 415 answers, /openapi.json and /metrics included,
        are framed by a Content-Length equal to the body's length (none on a 204), never
        chunked, and carry no Server header."""
        self.squad.api.allow_flush = True
        user = self.sign_up()
        signup = json.dumps(VALID_SIGNUP).encode("utf-8")
        requests = {
            b"201": b"POST /users HTTP/1.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(signup), signup),
            b"200": b"GET /users/%s HTTP/1.1\r\n\r\n" % user["_id"].encode("ascii"),
            b"200 openapi": b"GET /openapi.json HTTP/1.1\r\n\r\n",
            b"200 metrics": b"GET /metrics HTTP/1.1\r\n\r\n",
            b"204": b"GET /health HTTP/1.1\r\n\r\n",
            b"204 flush": b"DELETE /collections HTTP/1.1\r\n\r\n",
            b"400": b"POST /users HTTP/1.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\n\r\n[]",
            b"404": b"GET /nowhere HTTP/1.1\r\n\r\n",
            b"405": b"PUT /health HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            b"415": b"POST /users HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
        }
        for expected, request in requests.items():
            lines, content = self.exchange(request)
            status = expected.split(b" ")[0]
            self.assertTrue(lines[0].startswith(b"http/1.1 " + status + b" "), (expected, lines))
            headers = dict(line.split(b": ", 1) for line in lines[1:])
            self.assertNotIn(b"transfer-encoding", headers, expected)
            self.assertNotIn(b"server", headers, expected)
            if status == b"204":
                self.assertNotIn(b"content-length", headers, expected)
                self.assertEqual(content, b"", expected)
            else:
                self.assertEqual(headers[b"content-length"], b"%d" % len(content), expected)
                self.assertTrue(content, expected)

    def test_a_head_request_gets_the_length_of_the_get(self) -> None:
        """HEAD /openapi.json answers the Content-Length of GET /openapi.json, without a body."""
        _, document = self.exchange(b"GET /openapi.json HTTP/1.1\r\n\r\n")
        head_lines, content = self.exchange(b"HEAD /openapi.json HTTP/1.1\r\n\r\n")
        self.assertIn(b"content-length: %d" % len(document), head_lines)
        self.assertEqual(content, b"")


class SignupActivityTests(SynchronousTestCase):
    """How the background hasher learns whether sign-ups are flowing, and how fast."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.activity = SignupActivity(self.clock, quiet_after=0.5, heavy_per_second=10)

    def arrive(self, count: int, over: float) -> None:
        for _ in range(count):
            self.activity.saw_signup()
            self.clock.advance(over / count)

    def test_quiet_until_a_sign_up_and_again_after_quiet_after(self) -> None:
        """Busy from a sign-up for quiet_after seconds, then not busy."""
        self.assertFalse(self.activity.busy())
        self.activity.saw_signup()
        self.assertTrue(self.activity.busy())
        self.clock.advance(0.6)
        self.assertFalse(self.activity.busy())

    def test_heavy_from_heavy_per_second_in_a_second(self) -> None:
        """Fewer than heavy_per_second sign-ups in a second is busy but not heavy; that many is
        heavy, and stays heavy through the next second's first sign-ups."""
        self.arrive(5, over=1.0)
        self.assertTrue(self.activity.busy())
        self.assertFalse(self.activity.heavy())
        self.arrive(10, over=0.9)
        self.assertTrue(self.activity.heavy())
        self.clock.advance(0.2)
        self.arrive(1, over=0.1)
        self.assertTrue(self.activity.heavy())

    def test_a_burst_then_a_trickle_is_not_heavy(self) -> None:
        """A second of fast sign-ups followed by a trickle is heavy no longer after two
        seconds of the trickle, and never once they stop."""
        self.arrive(20, over=1.0)
        self.arrive(2, over=2.0)
        self.arrive(1, over=0.1)
        self.assertTrue(self.activity.busy())
        self.assertFalse(self.activity.heavy())
        self.arrive(30, over=1.0)
        self.clock.advance(1.0)
        self.assertFalse(self.activity.heavy())
