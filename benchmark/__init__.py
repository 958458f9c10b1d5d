"""
squad's benchmark: ``./bin/benchmark``, the original challenge's tool plus the figures and
charts that decide.

Not part of the service. The load comes from autocannon (``load/runner.js``, driven from code);
this package checks the service, runs the load, checks that nothing was lost in the database,
prints the table and, with ``--sweep``, writes a report with charts comparing squad with its
baseline and references.

- ``cli``, ``args``: the entry point of ``./bin/benchmark``, its command line and environment.
- ``figures``: the figures a run measures, and their JSON form.
- ``load/``: the load generators (autocannon's runner, the sign-up bodies, the original tool).
- ``run/``: one measured run and what it reads (service, ``/metrics``, database, processes).
- ``sweep/``, ``rate/``, ``original_tool/``: the modes ``--sweep``, ``--rate``, ``--original-tool``.
- ``report/``: the console table, ``report.md``, charts, verdicts, machine and versions.
- ``servers/``: the comparison servers, each marked BASELINE or REFERENCE: none of them is squad.
- ``probes/``: measuring tools run by hand, each cited in docs/ with its command.
"""
