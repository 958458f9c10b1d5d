"""The entry point of ``./bin/benchmark``."""

from __future__ import annotations

import contextlib
import os
import resource
import sys
from collections.abc import Mapping, Sequence

from benchmark.args import UsageError, help_text, parse_arguments
from benchmark.load.runner import LoadFailed
from benchmark.report.tables import console_report
from benchmark.run.measure import measure, say
from benchmark.run.service import ServiceDown

__all__ = ["main"]


def _raise_file_limit() -> None:
    """
    1000 connections need more than the common default of 1024 open files, in the load
    generator and in the servers a sweep starts (they inherit the limit): raise the soft limit
    to the hard one.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """
    Run ``./bin/benchmark`` with C{argv} (without the program name). Exit status: 0 when the
    run (or sweep) completed and nothing was lost, 1 when the service is down, the load could
    not run, a stored user is missing or the backlog did not drain, 2 for a usage error.
    """
    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ if environ is None else environ
    _raise_file_limit()
    try:
        settings = parse_arguments(argv, environ)
        if settings.help:
            print(help_text())
            return 0
        if settings.sweep:
            from benchmark.sweep.run import run_sweep

            folder = run_sweep(settings, environ, out=lambda text: print(text, flush=True))
            print(folder, flush=True)
            return 0
        if settings.rate is not None:
            from benchmark.rate.run import exit_status, run_rate

            rate_run, _ = run_rate(settings, environ, out=lambda text: print(text, flush=True))
            return exit_status(rate_run)
        if settings.original_tool:
            from benchmark.original_tool.report import console_report as original_tool_report
            from benchmark.original_tool.run import measure_original

            run = measure_original(settings.url, settings.connections, settings.duration, tell=say)
            print(original_tool_report(settings.url, run), flush=True)
            return 0
        result = measure(
            settings.url,
            settings.connections,
            settings.duration,
            settings.mongo_uri,
            settings.database,
            drain=settings.drain,
            service_pid=settings.service_pid,
        )
    except UsageError as error:
        say(f"bin/benchmark: {error} (try --help)")
        return 2
    except (ServiceDown, LoadFailed) as error:
        say(f"bin/benchmark: {error}")
        return 1
    except KeyboardInterrupt:
        say("bin/benchmark: interrupted")
        return 130
    print(
        console_report(settings.url, result, settings.database),
        flush=True,
    )
    return 1 if result.check.verdict == "FAIL" or result.drained is False else 0
