"""
``./bin/benchmark --original-tool``: ``run`` (the original challenge's client, with squad's
``/metrics`` read around it), ``figures`` (what it and squad counted) and ``report`` (the
original's table beside squad's count, and what the non-2xx were).
"""
