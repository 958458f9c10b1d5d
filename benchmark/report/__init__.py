"""
What a run or a sweep prints and writes: ``tables`` (the console table, the table drawing),
``markdown`` (a sweep's ``report.md`` and ``results.json``), ``charts`` (its PNGs), ``verdicts``
(squad against the references of the same sweep) and ``machine`` (the machine and versions).
"""
