"""
Measuring tools run by hand, each cited in docs/ with its command: ``db_ceiling``, ``db_ops`` and
``db_inserts`` (the database alone) and ``hash_drain`` (squad's password-hashing backlog).
"""
