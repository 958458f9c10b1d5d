"""The machine and the versions a report names, so its figures can be reproduced and compared."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from benchmark.load.runner import BENCHMARK_DIR

__all__ = ["machine_info", "versions"]

ROOT = BENCHMARK_DIR.parent


def _first(path: str, key: str) -> str | None:
    try:
        with open(path) as lines:
            for line in lines:
                name, _, value = line.partition(":")
                if name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return None


def machine_info() -> dict[str, str]:
    """CPU count and model, memory, operating system and kernel."""
    info = {
        "CPUs": str(os.cpu_count() or "?"),
        "CPU model": _first("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
    }
    memory = _first("/proc/meminfo", "MemTotal")
    if memory and memory.split()[0].isdigit():
        info["memory"] = f"{int(memory.split()[0]) / 1024 / 1024:.1f} GiB"
    os_name = None
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    info["OS"] = os_name or platform.system()
    info["kernel"] = platform.release()
    return info


def _package(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _node_package(name: str) -> str:
    try:
        text = (BENCHMARK_DIR / "node_modules" / name / "package.json").read_text()
        return str(json.loads(text)["version"])
    except (OSError, ValueError, KeyError):
        return "not installed"


def _command(*argv: str) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def versions(database: str | None = None) -> dict[str, str]:
    """The versions of everything that took part: tools, libraries, database, this checkout."""
    found = {
        "squad": _package("squad"),
        "Python": sys.version.split()[0],
        "Twisted": _package("Twisted"),
        "klein": _package("klein"),
        "txmongo": _package("txmongo"),
        "Node.js": _command(os.environ.get("NODE") or "node", "--version") or "not found",
        "autocannon": _node_package("autocannon"),
        "express (reference)": _node_package("express"),
        "mongodb driver (reference)": _node_package("mongodb"),
        "database": database or "unknown",
    }
    commit = _command("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD")
    if commit:
        dirty = _command("git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no")
        found["commit"] = commit + (" (with uncommitted changes)" if dirty else "")
    return found
