"""
REFERENCE, NOT SQUAD: the thinnest stored service, a Klein app that parses the body, writes each
reactor turn's sign-ups with one insert and answers 201 after the acknowledgement. See
``server.py``.
"""
