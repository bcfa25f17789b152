"""The group listing of every sample model, against reviewed golden files.

Regenerate after an intended change with ``pytest tests/test_golden.py --update-golden``
and review the diff.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import SAMPLE_NAMES, sample
from onnx_cswap.graph import analyse
from onnx_cswap.modelio import load_model

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_group_listing_matches_golden(name: str, update_golden: bool) -> None:
    if not sample(name).exists():
        pytest.skip(f"{name} not trained yet")
    listing = json.dumps(analyse(load_model(sample(name))).to_json(), indent=2) + "\n"
    golden = GOLDEN / f"{name}.groups.json"
    if update_golden:
        golden.write_text(listing)
        return
    assert golden.exists(), f"no golden file; run pytest {__file__} --update-golden"
    assert listing == golden.read_text(), "group listing changed; review, then --update-golden"
