"""
The load generators: ``runner.js`` (one autocannon run, a new sign-up body per request, from
``signup.js``), driven by ``runner.py``; ``loadgen-check.js`` (how much load one core drives);
``original-tool/`` (the original challenge's client on its pinned versions, its own npm project).
"""
