"""The chores that the instruments (``benchmark/``, ``chaos/``, ``cluster/``) and the integration
tests share; not part of the squad distribution.

- ``harness.probes``: a free 127.0.0.1 port, whether a port or a URL answers, waiting for one.
- ``harness.groups``: a process started in a group of its own, signalled and stopped whole.
- ``harness.processes``: what the process table says (psutil): descendants, CPU time, memory.
- ``harness.services``: the embedded database (``bin/db``) and squad (``twistd -n squad``) as
  real processes.
"""
