"""
One measured run, ``./bin/benchmark [connections] [duration]``: ``measure`` (the procedure), and
what it reads around the load: ``service`` (health, flush), ``metrics`` (squad's ``/metrics``),
``store`` (the database side) and ``procs`` (the service's processes, found from its port).
"""
