"""A journal of evaluations, so that an interrupted prune can resume.

Every criterion is deterministic given its inputs, and everything it decides follows
from the scores the evaluator returns. The journal stores each of those score vectors,
in order, with a hash of the mask that produced it. Resuming replays them instead of
running the model, then carries on: the run ends exactly as an uninterrupted one would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from onnx_cswap.errors import BadInputError

SYNC_INTERVAL_S = 1.0


def mask_key(
    keep: Mapping[int, np.ndarray], varying: int | None, samples: np.ndarray | None = None
) -> str:
    digest = hashlib.sha256(repr(varying).encode())
    for group_id in sorted(keep):
        digest.update(str(group_id).encode())
        digest.update(np.asarray(keep[group_id], dtype=bool).tobytes())
    if samples is not None:  # a partial evaluation (one class of a test)
        digest.update(b"samples")
        digest.update(np.asarray(samples, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


class Journal:
    """Append-only JSON lines: a header, then one line per evaluation."""

    def __init__(self, path: str | os.PathLike[str], header: dict[str, Any], resume: bool) -> None:
        self.path = Path(path)
        self.replay: deque[dict[str, Any]] = deque()
        self.replayed = 0
        self.entries = 0  # evaluations recorded in the file, replayed or new
        self._synced = time.monotonic()
        if resume:
            self._load(header)
            self._stream = self.path.open("a")
        else:
            self._stream = self.path.open("w")
            self._write(header)

    def _load(self, header: dict[str, Any]) -> None:
        if not self.path.is_file():
            raise BadInputError(f"--resume: no journal at {self.path}")
        lines = self.path.read_text().splitlines()
        try:
            recorded = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError:
            recorded = None
        entries = []
        for line in lines[1:]:
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut short by the kill: drop it and anything after
        if recorded != header:
            raise BadInputError(
                f"--resume: the journal {self.path} was written for another model, data or settings"
            )
        self.replay = deque(entries)
        self.entries = len(entries)
        # Rewrite without any torn last line, so that appending continues cleanly.
        self.path.write_text("".join(json.dumps(x) + "\n" for x in [header, *entries]))

    def _write(self, entry: dict[str, Any]) -> None:
        # Flushed at once, so a killed run loses nothing. Synced to disk only when a
        # second has passed since the last sync, and on close (a sync per line cost
        # more than the tests): a power cut may lose the lines since, and a torn last
        # line is dropped on resume.
        self._stream.write(json.dumps(entry) + "\n")
        self._stream.flush()
        if time.monotonic() - self._synced >= SYNC_INTERVAL_S:
            os.fsync(self._stream.fileno())
            self._synced = time.monotonic()

    def recall(self, key: str) -> np.ndarray | None:
        """The scores recorded for the next evaluation, if it is replayed."""
        if not self.replay:
            return None
        entry = self.replay.popleft()
        if entry["key"] != key:
            raise BadInputError(f"--resume: the journal {self.path} does not match this run")
        self.replayed += 1
        return np.frombuffer(base64.b64decode(entry["scores"]), dtype=np.float64).copy()

    def record(self, key: str, scores: np.ndarray) -> None:
        encoded = base64.b64encode(np.asarray(scores, dtype=np.float64).tobytes()).decode()
        self._write({"key": key, "scores": encoded})
        self.entries += 1

    def close(self, remove: bool = False) -> None:
        """Close; remove the file if asked, or if it holds nothing worth resuming."""
        if not remove:
            self._stream.flush()
            os.fsync(self._stream.fileno())
        self._stream.close()
        if remove or not self.entries:
            self.path.unlink(missing_ok=True)
