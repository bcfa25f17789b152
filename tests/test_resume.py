"""Interrupted runs: kill a prune midway, resume it, and get the same bytes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import sample

DIGITS = sample("digits_cnn")
ARGS = ["--order", "random", "--seed", "5", "--engine", "full"]


def prune_command(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "onnx_cswap",
        "prune",
        str(DIGITS),
        "-o",
        str(out),
        "--report",
        str(out.with_suffix(".json")),
        *ARGS,
        *extra,
    ]


def report_without_timings(path: Path) -> dict:
    payload = json.loads(path.read_text())
    for key in ("wall_time_s", "phases_s"):
        payload.pop(key)
    return payload


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_killed_run_resumes_to_the_same_bytes(tmp_path: Path, sig: signal.Signals) -> None:
    reference = tmp_path / "reference.onnx"
    subprocess.run(prune_command(reference), check=True, capture_output=True)

    out = tmp_path / "resumed.onnx"
    journal = out.with_name(out.name + ".journal")
    # A shell running tests in the background starts them with SIGINT ignored; give the
    # child the default disposition so that SIGINT acts as a Ctrl-C does in a terminal.
    process = subprocess.Popen(
        prune_command(out),
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.exists() and len(journal.read_text().splitlines()) > 30:
            break
        time.sleep(0.02)
    process.send_signal(sig)
    process.wait(timeout=60)
    assert process.returncode != 0, "the run finished before it could be interrupted"
    assert not out.exists()
    recorded = len(journal.read_text().splitlines())
    assert recorded > 30

    resumed = subprocess.run(prune_command(out, "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_bytes() == reference.read_bytes()
    assert report_without_timings(out.with_suffix(".json")) == report_without_timings(
        reference.with_suffix(".json")
    )
    assert not journal.exists()  # a finished run leaves no journal


def test_resume_refuses_a_journal_of_other_settings(tmp_path: Path) -> None:
    out = tmp_path / "o.onnx"
    journal = out.with_name(out.name + ".journal")
    journal.write_text(json.dumps({"tool": "x"}) + "\n")
    result = subprocess.run(prune_command(out, "--resume"), capture_output=True, text=True)
    assert result.returncode == 2
    assert "was written for another model, data or settings" in result.stderr
    assert not out.exists()


def test_bad_input_leaves_no_journal(tmp_path: Path) -> None:
    out = tmp_path / "o.onnx"
    result = subprocess.run(
        prune_command(out, "--criterion", "magnitude-l2"), capture_output=True, text=True
    )
    assert result.returncode == 2
    assert list(tmp_path.iterdir()) == []
