"""The database dies and comes back: fast 503s meanwhile, recovery without a restart.

Uses a private embedded database (bin/db on a free port) so that killing it disturbs no other
test. squad runs in this reactor, on real sockets.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.trial.unittest import TestCase

from tests.signups import VALID_SIGNUP
from tests.support import (
    Answer,
    PrivateDatabase,
    RunningSquad,
    database_uri,
    request,
    sleep,
    start_squad,
)


async def post(squad: RunningSquad) -> Answer:
    """POST /users with the valid sign-up, timed."""
    return await request("POST", squad.url + "/users", VALID_SIGNUP)


async def squad_on_a_private_database(test: TestCase) -> tuple[PrivateDatabase, RunningSquad]:
    """A private database, started, and squad in this reactor on it."""
    database_uri()  # the suite's database must be there too (bin/test built bin/db's binary)
    db = PrivateDatabase(test)
    await db.start()
    return db, await start_squad(test, uri=db.uri)


class DatabaseOutageTests(TestCase):
    timeout = 90

    async def test_outage_answers_fast_and_recovers_by_itself(self) -> None:
        """While the database is down POST /users answers 503 with Retry-After within 2.5 s and
        /ready answers 503; once it is back /ready returns 204 within 15 s, without restarting
        squad, and users acknowledged before the outage are still there."""
        db, squad = await squad_on_a_private_database(self)

        self.assertEqual((await post(squad)).code, 201)
        before = (await post(squad)).json()

        db.kill()
        for _ in range(3):
            answer = await post(squad)
            self.assertEqual(answer.code, 503)
            self.assertLess(answer.took, 2.5)
            self.assertTrue(answer.retry_after)
        ready = await squad.get("/ready")
        self.assertEqual(ready.code, 503)

        await db.start()
        back = reactor.seconds()
        while (await squad.get("/ready")).code != 204:
            self.assertLess(reactor.seconds() - back, 15, "not ready 15 s after the database")
            await sleep(0.2)
        self.assertEqual((await post(squad)).code, 201)
        found = await squad.get(f"/users/{before['_id']}")
        self.assertEqual(found.code, 200)
        await found.content()

    async def test_killed_under_load_every_answer_fast_and_every_201_kept(self) -> None:
        """Ten clients post back to back while the database is SIGKILLed and restarted: every
        answer is a 201 or a 503 with Retry-After, none takes over 2.5 s, sign-ups succeed
        again after the restart without restarting squad, and every user answered 201 —
        before, during or after the outage — is in the database."""
        db, squad = await squad_on_a_private_database(self)

        answers: list[Answer] = []
        phase = {"running": True}

        async def client() -> None:
            while phase["running"]:
                answers.append(await post(squad))

        clients = [ensureDeferred(client()) for _ in range(10)]
        await sleep(1.0)
        db.kill()
        await sleep(3.0)
        await db.start()
        restarted_at = len(answers)
        deadline = reactor.seconds() + 15
        while not any(answer.code == 201 for answer in answers[restarted_at:]):
            self.assertLess(reactor.seconds(), deadline, "no 201 within 15 s of the restart")
            await sleep(0.2)
        await sleep(1.0)
        phase["running"] = False
        results = await DeferredList(clients, consumeErrors=True)
        self.assertTrue(all(ok for ok, _ in results), results)

        codes = {answer.code for answer in answers}
        self.assertEqual(codes, {201, 503}, codes)
        for answer in answers:
            self.assertIsInstance(answer.json(), dict)  # a JSON body, whatever the status
            self.assertLess(answer.took, 2.5)
            if answer.code == 503:
                self.assertTrue(answer.retry_after)
        acknowledged = [answer.json()["_id"] for answer in answers if answer.code == 201]
        for user_id in acknowledged:
            found = await squad.get(f"/users/{user_id}")
            self.assertEqual(found.code, 200, f"acknowledged user {user_id} is missing")
            await found.content()
