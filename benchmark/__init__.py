"""
squad's benchmark: ``./bin/benchmark``, the original challenge's tool plus the figures and
charts that decide.

Not part of the service. The load comes from autocannon (``runner.js``, driven from code); this
package checks the service, runs the load, checks that nothing was lost in the database, prints the
table and, with ``--sweep``, writes a report with charts comparing squad with its baseline and
references.

Modules, one concern each:

- ``args``: the command line and the environment it reads.
- ``figures``: the measured figures, and their JSON form.
- ``service``: the HTTP steps around a run (health check, flush).
- ``load``: one autocannon run through ``runner.js``.
- ``store``: the database side (nothing-lost check, drain, server version).
- ``procs``: the processes behind a port (memory and CPU).
- ``machine``: the machine and the versions a report names.
- ``report`` and ``charts``: the console table, ``report.md`` and its PNG charts.
- ``sweep``: the comparison targets and the sweep over connection levels.
- ``cli``: the entry point of ``./bin/benchmark``.

``baseline/``, ``ceiling/`` and ``reference-node/`` hold the comparison servers, each clearly
marked as such: none of them is squad.
"""
