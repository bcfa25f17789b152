"""Shared helpers of the benchmark scripts: machine description, marked doc sections."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"


def write_section(path: Path, name: str, body: str) -> None:
    """Replace the text between ``<!-- name -->`` markers (appending them if absent)."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    page = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in page and end in page:
        before, rest = page.split(start, 1)
        after = rest.split(end, 1)[1]
    else:
        before, after = page.rstrip("\n") + "\n\n", "\n"
    path.write_text(f"{before}{start}\n{body.strip()}\n{end}{after}")
