"""
BASELINE, NOT SQUAD: a small server that reproduces the seed's original behaviour, for the
benchmark's before/after comparison. See ``server.py``.
"""
