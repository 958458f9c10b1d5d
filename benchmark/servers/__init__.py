"""
The servers a sweep compares squad with. None of them is squad: ``baseline/`` (BASELINE),
``ceiling/``, ``stored/`` and ``reference-node/`` (REFERENCE); ``shared_port`` gives the Python
ones squad's process shape.
"""
