"""
BASELINE, NOT SQUAD: a small server that reproduces the original service's behaviour, for the
benchmark's before/after comparison. See ``server.py``.
"""
