"""
``./bin/benchmark --rate R``: ``sampling`` (/metrics, the WAL, memory), ``wait`` (until every user
is processed), ``lag`` (the slow-step lag), ``figures`` and ``verdicts`` (the run and its
targets), ``report`` (console, ``report.md``, ``rate.json``) and ``run`` (the whole of it).
"""
