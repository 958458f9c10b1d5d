"""New sign-up bodies for the load that the instruments put on squad: realistic names, and an
email and username that no other request of the run shares."""

from __future__ import annotations

import json
import random

__all__ = ["new_signup"]

FIRST_NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia"]
LAST_NAMES = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Perlman"]


def new_signup(rng: random.Random, client: int, n: int) -> bytes:
    """The JSON body of request ``n`` of ``client``: unique by those two numbers, and by a random
    tag across runs and parts of a run that number their clients and requests alike."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    tag = f"{client}x{n}x{rng.getrandbits(24):06x}"
    return json.dumps(
        {
            "firstName": first,
            "lastName": last,
            "email": f"{first}.{last}.{tag}@example.org".lower(),
            "username": f"{first[0]}{last}{tag}".lower(),
            "password": f"pw-{rng.getrandbits(64):016x}",
        }
    ).encode()
