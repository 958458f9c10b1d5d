"""A validated sign-up: the value that the HTTP side hands to the rest of squad once a request
body passed every rule (``squad.http.validation``), and that the store writes."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SignUp"]


@dataclass(frozen=True, slots=True)
class SignUp:
    """A validated sign-up. The password is plaintext: keep it in memory only, seal it at once."""

    first_name: str
    last_name: str
    email: str
    username: str
    password: str = field(repr=False)
