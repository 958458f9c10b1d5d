"""
``./bin/benchmark --sweep``: ``targets`` (squad and the servers it is compared with),
``running`` (a target as a process group) and ``run`` (every level against every target).
"""
