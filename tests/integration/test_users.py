"""squad end to end: real HTTP on 127.0.0.1, the real embedded database, real timers."""

from __future__ import annotations

import json
from typing import Any

import treq
from bson import ObjectId
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from tests.signups import USER_FIELDS, VALID_SIGNUP
from tests.support import eventually, mongo, sleep, start_squad


class UsersIntegrationTests(TestCase):
    timeout = 60

    async def test_post_then_get_shows_processed_false_then_true(self) -> None:
        """POST answers 201 at once with processed false; after the slow step GET shows true."""
        squad = await start_squad(self, "--slow-min", "0.3", "--slow-max", "0.5")
        response = await squad.post_signup()
        self.assertEqual(response.code, 201)
        body = json.loads(await response.content())
        self.assertEqual(set(body), USER_FIELDS)
        self.assertFalse(body["processed"])
        self.assertEqual(response.headers.getRawHeaders("location"), [f"/users/{body['_id']}"])
        fetched = await treq.json_content(await squad.get(f"/users/{body['_id']}"))
        self.assertEqual(fetched, body)

        async def processed() -> bool:
            user = await treq.json_content(await squad.get(f"/users/{body['_id']}"))
            return bool(user["processed"])

        await eventually(processed, 10, "the user processed")
        user = await treq.json_content(await squad.get(f"/users/{body['_id']}"))
        self.assertGreater(user["date_updated"], user["date_created"])

    async def test_stored_document_has_the_contract_fields_and_no_plaintext(self) -> None:
        """The database holds BSON dates, processed, and only a salted hash of the password."""
        squad = await start_squad(self, "--slow-min", "0.1", "--slow-max", "0.2")
        body = json.loads(await (await squad.post_signup()).content())
        pool, db = await mongo(squad.uri, squad.database)
        self.addCleanup(pool.disconnect)

        async def hashed() -> bool:
            doc = await db.users.find_one({"_id": ObjectId(body["_id"])}, timeout=5)
            return bool(doc and doc.get("password_hash") and doc.get("processed"))

        await eventually(hashed, 20, "the password hashed and the user processed")
        doc = await db.users.find_one({"_id": ObjectId(body["_id"])}, timeout=5)
        self.assertEqual(doc["email"], VALID_SIGNUP["email"])
        self.assertEqual(type(doc["date_created"]).__name__, "datetime")
        self.assertTrue(doc["password_hash"].startswith("$argon2id$"))
        everything = json.dumps([d async for d in _all_documents(db)], default=str)
        self.assertNotIn(VALID_SIGNUP["password"], everything)

        async def finished() -> bool:
            left = [
                await db[name].count_documents({}, timeout=5)
                for name in ("pending", "sealed_passwords")
            ]
            return left == [0, 0]

        await eventually(finished, 10, "no pending work or sealed password left")

    async def test_each_fact_is_stored_once_in_its_own_place(self) -> None:
        """While the slow steps run, a batch's one work document, in sealed_passwords, holds
        only its owner, its users' ids and their sealed passwords (and stays, hashed or not,
        as the record of the steps); there is no pending document; once finished, the work
        document is gone and each user is a flat document of scalars."""
        squad = await start_squad(self, "--slow-min", "2", "--slow-max", "2")
        ids = [
            ObjectId(json.loads(await (await squad.post_signup()).content())["_id"])
            for _ in range(3)
        ]
        pool, db = await mongo(squad.uri, squad.database)
        self.addCleanup(pool.disconnect)
        work = await db.sealed_passwords.find({}, timeout=5)
        self.assertEqual({u for doc in work for u in doc["users"]}, set(ids))
        for doc in work:
            self.assertEqual(set(doc), {"_id", "owner", "users", "sealed"})
        self.assertEqual(await db.pending.count_documents({}, timeout=5), 0)

        async def finished() -> bool:
            done = await db.users.count_documents(
                {"_id": {"$in": ids}, "processed": True, "password_hash": {"$exists": True}},
                timeout=5,
            )
            left = [
                await db[name].count_documents({}, timeout=5)
                for name in ("pending", "sealed_passwords")
            ]
            return done == len(ids) and left == [0, 0]

        await eventually(finished, 20, "every user processed and hashed, no work left")
        for user in await db.users.find({"_id": {"$in": ids}}, timeout=5):
            flat = {key for key, value in user.items() if not isinstance(value, dict | list)}
            self.assertEqual(flat, set(user))

    async def test_unknown_and_malformed_ids(self) -> None:
        """GET /users answers 404 for an unknown id and 400 for a malformed one."""
        squad = await start_squad(self)
        unknown = await squad.get(f"/users/{ObjectId()}")
        self.assertEqual(unknown.code, 404)
        self.assertEqual((await treq.json_content(unknown))["error"], "user_not_found")
        malformed = await squad.get("/users/not-an-id")
        self.assertEqual(malformed.code, 400)

    async def test_invalid_body_stores_nothing(self) -> None:
        """A refused sign-up answers 400 with a JSON error and leaves the database empty."""
        squad = await start_squad(self)
        response = await squad.post_signup({**VALID_SIGNUP, "email": "not-an-email"})
        self.assertEqual(response.code, 400)
        error = await treq.json_content(response)
        self.assertEqual(error["error"], "invalid_email")
        pool, db = await mongo(squad.uri, squad.database)
        self.addCleanup(pool.disconnect)
        self.assertEqual(await db.users.count_documents({}, timeout=5), 0)

    async def test_delete_collections_empties_everything(self) -> None:
        """With --allow-flush, DELETE /collections removes every user and all pending work."""
        squad = await start_squad(self, "--allow-flush")
        for _ in range(3):
            self.assertEqual((await squad.post_signup()).code, 201)
        self.assertEqual((await squad.delete("/collections")).code, 204)
        pool, db = await mongo(squad.uri, squad.database)
        self.addCleanup(pool.disconnect)
        for name in ("users", "pending", "sealed_passwords"):
            self.assertEqual(await db[name].count_documents({}, timeout=5), 0, name)

    async def test_delete_collections_is_absent_without_the_flag(self) -> None:
        """Without --allow-flush, DELETE /collections answers 404 and deletes nothing."""
        squad = await start_squad(self)
        self.assertEqual((await squad.post_signup()).code, 201)
        self.assertEqual((await squad.delete("/collections")).code, 404)
        pool, db = await mongo(squad.uri, squad.database)
        self.addCleanup(pool.disconnect)
        self.assertEqual(await db.users.count_documents({}, timeout=5), 1)

    async def test_idempotent_retry_answers_the_first_user_again(self) -> None:
        """A retry with the same Idempotency-Key gets the same 201 and body; nothing new is
        stored. The same key with another body is refused with 422."""
        squad = await start_squad(self)
        headers = {"Idempotency-Key": "retry-me-1"}
        first = await squad.post_signup(headers=headers)
        second = await squad.post_signup(headers=headers)
        self.assertEqual((first.code, second.code), (201, 201))
        self.assertEqual(await first.content(), await second.content())
        self.assertEqual(
            first.headers.getRawHeaders("location"), second.headers.getRawHeaders("location")
        )
        other = await squad.post_signup({**VALID_SIGNUP, "username": "other"}, headers)
        self.assertEqual(other.code, 422)
        self.assertEqual((await treq.json_content(other))["error"], "idempotency_key_reused")
        pool, db = await mongo(squad.uri, squad.database)
        self.addCleanup(pool.disconnect)
        self.assertEqual(await db.users.count_documents({}, timeout=5), 1)
        stored = json.dumps([d async for d in _all_documents(db)], default=str)
        self.assertNotIn(VALID_SIGNUP["password"], stored)

    async def test_malformed_idempotency_key_is_refused(self) -> None:
        """An Idempotency-Key over 255 characters is refused with 400 and stores nothing."""
        squad = await start_squad(self)
        response = await squad.post_signup(headers={"Idempotency-Key": "k" * 256})
        self.assertEqual(response.code, 400)
        self.assertEqual((await treq.json_content(response))["error"], "invalid_idempotency_key")

    async def test_logs_carry_no_password(self) -> None:
        """Everything logged while sign-ups (good and refused) flow, as JSON, lacks the password."""
        from twisted.logger import ILogObserver, eventAsJSON, globalLogPublisher
        from zope.interface import provider

        lines: list[str] = []

        @provider(ILogObserver)
        def observe(event: Any) -> None:
            lines.append(eventAsJSON(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        squad = await start_squad(self, "--slow-min", "0.1", "--slow-max", "0.2")
        await squad.post_signup()
        await squad.post_signup({**VALID_SIGNUP, "email": "broken"})
        await squad.post_signup({**VALID_SIGNUP, "extra": VALID_SIGNUP["password"]})
        await sleep(0.5)
        self.assertTrue(lines)
        for line in lines:
            json.loads(line)
            self.assertNotIn(VALID_SIGNUP["password"], line)

    async def test_verifier_failures_are_retried_until_it_answers(self) -> None:
        """With --verifier-url, a verifier that fails twice then answers 2xx leaves the user
        unprocessed with a visible retrying state, then processed."""
        from twisted.internet import endpoints
        from twisted.web.resource import Resource
        from twisted.web.server import Site

        calls: list[bytes] = []

        class Verifier(Resource):
            isLeaf = True

            def render_POST(self, request: Any) -> bytes:
                calls.append(request.content.read())
                request.setResponseCode(500 if len(calls) <= 2 else 200)
                return b"{}"

        port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Site(Verifier())
        )
        self.addCleanup(port.stopListening)
        url = f"http://127.0.0.1:{port.getHost().port}/verify"
        squad = await start_squad(self, "--verifier-url", url)
        body = json.loads(await (await squad.post_signup()).content())
        pool, db = await mongo(squad.uri, squad.database)
        self.addCleanup(pool.disconnect)

        async def retrying() -> bool:
            doc = await db.users.find_one({"_id": ObjectId(body["_id"])}, timeout=5)
            return bool(doc and doc.get("verification_state") == "retrying")

        await eventually(retrying, 10, 'verification_state "retrying"')

        async def processed() -> bool:
            user = await treq.json_content(await squad.get(f"/users/{body['_id']}"))
            return bool(user["processed"])

        await eventually(processed, 20, "the user processed once the verifier answered")
        self.assertEqual(len(calls), 3)
        self.assertEqual(json.loads(calls[-1]), {"id": body["_id"]})

    async def test_health_and_ready(self) -> None:
        """/health answers 204 while serving; /ready answers 204 while the database answers."""
        squad = await start_squad(self)
        self.assertEqual((await squad.get("/health")).code, 204)
        self.assertEqual((await squad.get("/ready")).code, 204)


async def _all_documents(db: Any) -> Any:
    for name in ("users", "pending", "sealed_passwords", "processes", "idempotency_keys"):
        for doc in await db[name].find({}, timeout=5):
            yield doc
