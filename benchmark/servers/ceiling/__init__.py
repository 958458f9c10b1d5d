"""
REFERENCE CEILING, NOT SQUAD: a bare Klein app that parses the body and answers 201 with no I/O,
the throughput squad is measured against. See ``server.py``.
"""
