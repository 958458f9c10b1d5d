"""The HTTP API (Klein routes): health, sign-ups, users, metrics, the OpenAPI document.

The request path of ``POST /users`` does only what the answer needs: validate, seal the
password, hand the documents to the group commit, answer 201 once the database acknowledged
them. The slow step starts after the answer has been written, on its own Deferred: Klein
cancels a handler's Deferred when the client disconnects, and a stored user must be processed
whether or not its client stayed to hear the answer.
"""

from __future__ import annotations

import hmac
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from bson import ObjectId
from klein import Klein
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import MethodNotAllowed, NotFound

from squad.background.slow_step import SlowWork
from squad.http.deadlines import Deadlines
from squad.http.errors import ErrorKind, write_error
from squad.http.fields import IDEMPOTENCY_KEY, USER_ID
from squad.http.idempotency import (
    IDEMPOTENCY_WINDOW_SECONDS,
    InvalidIdempotencyKey,
    Recorded,
    check_key,
    fingerprint,
    new_record,
    recorded,
)
from squad.http.openapi import openapi_json
from squad.http.validation import InvalidRequest, check_content_type, parse_signup
from squad.metrics import render, route_labeller
from squad.passwords import PasswordSealer
from squad.signup import SignUp
from squad.storage.documents import bson_now, new_user_document, user_json
from squad.storage.group_commit import GroupCommit
from squad.storage.store import IStore, PendingSignup

__all__ = ["ROUTE_TEMPLATES", "SignupActivity", "SquadAPI", "path_template", "route_of"]

log = Logger()

JSON = b"application/json"
# A duplicate of an Idempotency-Key in flight looks this often whether the first one's user is
# stored, and gives up (request_in_progress) this long before its own deadline.
FIRST_OUTCOME_POLL_SECONDS = 0.05
FIRST_OUTCOME_SLACK = 0.25
_USER_ID: Final = re.compile(USER_ID.pattern)


def _relay(source: Deferred[None]) -> Deferred[None]:
    """A Deferred that follows ``source`` but whose cancellation leaves ``source`` alone."""
    relay: Deferred[None] = Deferred()

    def forward(result: object) -> None:
        if not relay.called:
            if isinstance(result, Failure):
                relay.errback(result)
            else:
                relay.callback(None)

    source.addBoth(forward)
    return relay


class SignupActivity:
    """When the last sign-up arrived and how fast they come: background work holds back while
    sign-ups flow, and stops while ``heavy_per_second`` or more arrive (never, by default)."""

    def __init__(
        self,
        clock: IReactorTime,
        quiet_after: float = 0.5,
        heavy_per_second: float = math.inf,
    ) -> None:
        self._clock = clock
        self._quiet_after = quiet_after
        self._heavy_per_second = heavy_per_second
        self._last = float("-inf")
        # Sign-ups counted in one-second windows: this one so far, and the one before it.
        self._window_start = float("-inf")
        self._in_window = 0
        self._in_previous_window = 0

    def saw_signup(self) -> None:
        now = self._clock.seconds()
        self._last = now
        elapsed = now - self._window_start
        if elapsed >= 1.0:
            self._in_previous_window = self._in_window if elapsed < 2.0 else 0
            self._window_start = now
            self._in_window = 0
        self._in_window += 1

    def busy(self) -> bool:
        """A sign-up arrived within the last ``quiet_after`` seconds."""
        return self._clock.seconds() - self._last < self._quiet_after

    def heavy(self) -> bool:
        """Busy, with ``heavy_per_second`` sign-ups or more in the last second or this one."""
        return self.busy() and (
            max(self._in_window, self._in_previous_window) >= self._heavy_per_second
        )


class SquadAPI:
    """The routes of one squad process, bound to its store and its background work."""

    app = Klein()

    def __init__(
        self,
        clock: IReactorTime,
        store: IStore,
        commit: GroupCommit[PendingSignup],
        slow_work: SlowWork,
        sealer: PasswordSealer,
        *,
        allow_flush: bool = False,
        write_deadline: float = 2.0,
        max_waiting: int = 4096,
        idempotency_secret: bytes = b"",
        on_shed: Callable[[], None] = lambda: None,
        on_flush: Callable[[], None] = lambda: None,
        activity: SignupActivity | None = None,
    ) -> None:
        self._clock = clock
        self._activity = activity or SignupActivity(clock)
        self._store = store
        self._commit = commit
        self._slow_work = slow_work
        self._sealer = sealer
        self.allow_flush = allow_flush
        self.write_deadline = write_deadline
        self.max_waiting = max_waiting
        self._on_shed = on_shed
        self._on_flush = on_flush
        self.waiting = 0
        self._deadlines = Deadlines(clock)
        self._idempotency_secret = idempotency_secret

    def stop(self) -> None:
        """The process is stopping: no more deadline ticks."""
        self._deadlines.stop()

    # -- health -------------------------------------------------------------------------------

    @app.route("/health", methods=["GET"])
    def health(self, request: IRequest) -> bytes:
        request.setResponseCode(204)
        return b""

    @app.route("/ready", methods=["GET"])
    async def ready(self, request: IRequest) -> bytes:
        try:
            await self._store.ping()
        except Exception:
            return write_error(request, ErrorKind.DATABASE_UNAVAILABLE)
        request.setResponseCode(204)
        return b""

    # -- users --------------------------------------------------------------------------------

    @app.route("/users", methods=["POST"])
    async def create_user(self, request: IRequest) -> bytes:
        self._activity.saw_signup()
        if self.waiting >= self.max_waiting:
            self._on_shed()
            return write_error(request, ErrorKind.OVERLOADED)
        try:
            check_content_type(request.getHeader(b"content-type"))
            signup = parse_signup(request.content.read())
            key = check_key(request.getHeader(b"idempotency-key"))
        except InvalidRequest as refused:
            return write_error(request, refused.kind, refused.message, field=refused.field)
        except InvalidIdempotencyKey as refused:
            return write_error(
                request,
                ErrorKind.INVALID_IDEMPOTENCY_KEY,
                f"The Idempotency-Key header {refused}.",
                field=IDEMPOTENCY_KEY.name,
            )

        # One deadline for everything that touches the database: the key lookup and the write.
        self.waiting += 1
        try:
            attempt = ensureDeferred(self._store_signup(request, signup, key))
            return await self._deadlines.watch(attempt, self.write_deadline)
        except CancelledError:
            raise  # the client went away; a write in flight goes on and its work still runs
        except (TimeoutError, Exception) as error:
            log.debug("Sign-up not stored: {error}", error=error)
            return self._unavailable(request)
        finally:
            self.waiting -= 1

    async def _store_signup(self, request: IRequest, signup: SignUp, key: str | None) -> bytes:
        now = self._clock.seconds()
        user_id = ObjectId()
        created = bson_now(now)
        if key is not None:
            earlier = await self._honour_key(request, key, signup, user_id, created)
            if isinstance(earlier, bytes):
                return earlier
            user_id, created = earlier
        user = new_user_document(user_id, signup, created)
        item = PendingSignup(
            user=user,
            sealed_password=self._sealer.seal(signup.password, associated=user_id.binary),
            owner=self._slow_work.owner_for_new_signup(),
        )
        stored = self._commit.submit(item, deadline=now + self.write_deadline)
        stored.addCallbacks(
            self._after_stored, self._after_not_stored, (request, item), {}, (item,)
        )
        # Cancelling this wait (timeout, client gone) leaves the batch write alone.
        await _relay(stored)
        return self._created(request, user_id, user_json(user))

    async def _honour_key(
        self, request: IRequest, key: str, signup: SignUp, user_id: ObjectId, created: datetime
    ) -> bytes | tuple[ObjectId, datetime]:
        """Either the answer to give now (a replay, a conflict, a failure) or the id and date
        under which to write this sign-up."""
        try:
            claim = await self._claim_key(key, signup, user_id, created)
            if isinstance(claim, Recorded):
                first = await self._first_outcome(claim)
                if first == "stored":
                    return self._created(request, claim.user_id, claim.response)
                if first == "in_flight":
                    return write_error(
                        request, ErrorKind.REQUEST_IN_PROGRESS, field=IDEMPOTENCY_KEY.name
                    )
        except CancelledError:
            raise
        except Exception as error:
            log.debug("Idempotency record not available: {error}", error=error)
            return self._unavailable(request)
        if claim == "conflict":
            return write_error(
                request, ErrorKind.IDEMPOTENCY_KEY_REUSED, field=IDEMPOTENCY_KEY.name
            )
        if isinstance(claim, Recorded):
            # The first try recorded its answer but its user never reached the database: write
            # it now, under the recorded id and date, and give the recorded answer.
            return claim.user_id, claim.created
        return user_id, created

    async def _first_outcome(self, first: Recorded) -> str:
        """What became of the first request with a key this request reuses: ``"stored"``,
        ``"failed"`` (its deadline passed with no user: this request writes it), or
        ``"in_flight"`` when that is still unknown as this request's own deadline nears.

        A concurrent duplicate waits for the first one's outcome rather than racing it: racing
        would write the same user twice and answer one of them 503.
        """
        started = self._clock.seconds()
        first_known_by = _timestamp(first.created) + self.write_deadline + FIRST_OUTCOME_SLACK
        give_up_at = started + self.write_deadline - FIRST_OUTCOME_SLACK
        while True:
            if await self._user_exists(first.user_id):
                return "stored"
            now = self._clock.seconds()
            if now >= first_known_by:
                return "failed"
            if now >= give_up_at:
                return "in_flight"
            await deferLater(self._clock, FIRST_OUTCOME_POLL_SECONDS)

    def _unavailable(self, request: IRequest) -> bytes:
        return write_error(
            request,
            ErrorKind.DATABASE_UNAVAILABLE,
            "Your sign-up could not be confirmed right now. Please retry in a moment (with the"
            " same Idempotency-Key, a retry never creates a second account).",
        )

    def _created(self, request: IRequest, user_id: ObjectId, body: bytes) -> bytes:
        request.setResponseCode(201)
        request.setHeader(b"content-type", JSON)
        request.setHeader(b"location", f"/users/{user_id}".encode("ascii"))
        return body

    async def _user_exists(self, user_id: ObjectId) -> bool:
        return await self._store.find_user(user_id) is not None

    async def _claim_key(
        self, key: str, signup: SignUp, user_id: ObjectId, created: datetime, retried: bool = False
    ) -> str | Recorded:
        """``"new"`` when this request owns the key now, ``"conflict"`` for another body under
        the same key, or the first request's ``Recorded`` answer."""
        digest = fingerprint(self._idempotency_secret, signup)
        found = await self._store.find_idempotency_record(key)
        expired = (
            found is not None
            and (_naive(created) - _naive(found["created"])).total_seconds()
            > IDEMPOTENCY_WINDOW_SECONDS
        )
        if found is not None and not expired:
            first = recorded(found)
            return first if hmac.compare_digest(first.fingerprint, digest) else "conflict"
        body = user_json(new_user_document(user_id, signup, created))
        record = new_record(key, user_id, digest, created, body)
        if expired:
            await self._store.replace_idempotency_record(record)
            return "new"
        if await self._store.insert_idempotency_record(record):
            return "new"
        if retried:
            raise RuntimeError("the idempotency record vanished while it was being read")
        # Another request with this key recorded it a moment ago: answer like a retry.
        return await self._claim_key(key, signup, user_id, created, retried=True)

    def _after_stored(self, result: None, request: IRequest, item: PendingSignup) -> None:
        def start(_: object = None) -> None:
            self._slow_work.accept(item.user_id)

        # The answer is written right after this callback, so start once it is out, or at once
        # for a client that already left (its stored user is processed all the same).
        if getattr(request, "_disconnected", False) or getattr(request, "finished", False):
            start()
        else:
            request.notifyFinish().addBoth(start)  # type: ignore[attr-defined]

    def _after_not_stored(self, failure: Failure, item: PendingSignup) -> Failure:
        self._slow_work.signup_failed(item.owner)
        return failure

    @app.route("/users/<user_id>", methods=["GET"])
    async def get_user(self, request: IRequest, user_id: str) -> bytes:
        if _USER_ID.fullmatch(user_id) is None:
            return write_error(request, ErrorKind.INVALID_ID, field=USER_ID.name)
        try:
            found = await self._store.find_user(ObjectId(user_id))
        except Exception:
            return write_error(request, ErrorKind.DATABASE_UNAVAILABLE)
        if found is None:
            return write_error(request, ErrorKind.USER_NOT_FOUND, f"There is no user {user_id}.")
        request.setHeader(b"content-type", JSON)
        return user_json(found)

    @app.route("/metrics", methods=["GET"])
    def metrics(self, request: IRequest) -> bytes:
        body, content_type = render()
        request.setHeader(b"content-type", content_type.encode("ascii"))
        return body

    @app.route("/openapi.json", methods=["GET"])
    def openapi(self, request: IRequest) -> bytes:
        request.setHeader(b"content-type", JSON)
        return openapi_json()

    # -- maintenance --------------------------------------------------------------------------

    @app.route("/collections", methods=["DELETE"])
    async def delete_collections(self, request: IRequest) -> bytes:
        if not self.allow_flush:
            return self._not_found(request)
        try:
            await self._store.delete_everything(bson_now(self._clock.seconds()))
        except Exception:
            return write_error(request, ErrorKind.DATABASE_UNAVAILABLE)
        self._slow_work.drop_all()
        self._on_flush()
        request.setResponseCode(204)
        return b""

    # -- errors -------------------------------------------------------------------------------

    @app.handle_errors(NotFound)
    def not_found(self, request: IRequest, failure: Failure) -> bytes:
        return self._not_found(request)

    def _not_found(self, request: IRequest) -> bytes:
        return write_error(request, ErrorKind.NOT_FOUND)

    @app.handle_errors(MethodNotAllowed)
    def method_not_allowed(self, request: IRequest, failure: Failure) -> bytes:
        allowed: Any = getattr(failure.value, "valid_methods", None) or []
        request.setHeader(b"allow", ", ".join(allowed).encode("ascii"))
        return write_error(
            request,
            ErrorKind.METHOD_NOT_ALLOWED,
            f"This address does not accept {request.method.decode('ascii', 'replace')}.",
        )


def path_template(rule: str) -> str:
    """A Klein rule as an OpenAPI path template: ``/users/<user_id>`` is ``/users/{id}``."""
    # squad's one path variable is a user's id, which the OpenAPI document calls id.
    return re.sub(r"<[^>]+>", "{id}", rule)


#: The path of every route, as a template, in the order the routes are declared.
ROUTE_TEMPLATES: Final = tuple(
    dict.fromkeys(path_template(rule.rule) for rule in SquadAPI.app.url_map.iter_rules())
)

#: The metric label of a request path: its route's template, or "other".
route_of: Final = route_labeller(ROUTE_TEMPLATES)


def _timestamp(moment: datetime) -> float:
    # Stored dates come back naive (UTC); ours carry tzinfo.
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _naive(moment: datetime) -> datetime:
    # txmongo returns naive UTC datetimes and ours carry tzinfo, so both are compared naive.
    return moment.replace(tzinfo=None)
