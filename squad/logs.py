"""The public name of squad's JSON log observer: ``twistd --logger squad.logs.json_observer``.

Operators put this path in their configuration, so it stays here while the implementation
lives with the rest of the process's plumbing in ``squad.runtime.logs``.
"""

from squad.runtime.logs import json_observer

__all__ = ["json_observer"]
