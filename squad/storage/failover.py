"""Sign-up writes cut by a primary failover, retried once.

When a replica set elects a new primary, writes in flight fail: txmongo raises ``AutoReconnect``
for a dropped connection and ``NotPrimaryError`` (a subclass) when the node it reached stepped
down. Without a retry each such batch answers 503 and every client has to come back. One retry
inside squad is safe because every document of a sign-up carries an ``_id`` generated here, not
by the database: writing the batch again can only create what is missing, and a duplicate key
means the first attempt had landed.

``Store.insert_signups`` writes the work (the batch's ``sealed_passwords`` document, and a
``pending`` one for overflow; a duplicate means an earlier attempt wrote it) and then the
users, and marks an item whose user insert was refused as failed. On the retry a duplicate
user is the case "the first attempt may have written it", so for those items the user is
written once more here, a duplicate again counting as written. An item is acknowledged only
once its user is known to be in the database.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from pymongo.errors import AutoReconnect
from twisted.logger import Logger

from squad.storage.store import PendingSignup, WriteRefused, insert_unordered

__all__ = ["retry_once_on_failover"]

log = Logger()

DUPLICATE_KEY = 11000


def _is_duplicate(error: BaseException | None) -> bool:
    return isinstance(error, WriteRefused) and (
        "E11000" in str(error) or "duplicate key" in str(error)
    )


def retry_once_on_failover(
    write: Callable[[list[PendingSignup]], Awaitable[None]],
    users: Callable[[], Any],
    timeout: float,
    on_retry: Callable[[], None] = lambda: None,
) -> Callable[[list[PendingSignup]], Coroutine[Any, Any, None]]:
    """``write`` (``Store.insert_signups``), retried once when a failover cut it.

    ``users`` returns the ``users`` collection (looked up late: the store attaches it when the
    database service starts).
    """

    async def write_with_retry(batch: list[PendingSignup]) -> None:
        try:
            await write(batch)
            return
        except AutoReconnect as error:
            log.info(
                "A sign-up write was cut by a failover or a lost connection ({error}); retrying"
                " it once.",
                error=error,
            )
            on_retry()
        # Items the first attempt already refused keep their answer; the others go again.
        again = [item for item in batch if item.error is None]
        await write(again)
        unsure = [item for item in again if _is_duplicate(item.error)]
        if not unsure:
            return
        for item in unsure:
            item.error = None
        for entry in await insert_unordered(users(), [item.user for item in unsure], timeout):
            if entry.get("code") != DUPLICATE_KEY:
                item = unsure[int(entry["index"])]
                item.error = WriteRefused(str(entry.get("errmsg", "write error")))

    return write_with_retry
