"""squad's ``Options`` parsed in tests: from a command line and an environment alone, with a
well-formed seal key and no port probed."""

from __future__ import annotations

from squad.tap import Options

__all__ = ["KEY", "parse"]

KEY = "A" * 43 + "="  # 32 zero-ish bytes in base64: a well-formed seal key for option tests


def parse(argv: list[str], environ: dict[str, str] | None = None) -> Options:
    """``Options`` parsed from ``argv`` and ``environ`` alone, with no port probed."""
    options = Options(
        environ={"SQUAD_SEAL_KEY": KEY, **(environ or {})}, probe_port=lambda port: None
    )
    options.parseOptions(argv)
    return options
