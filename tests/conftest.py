from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"
SAMPLE_NAMES = [
    "digits_cnn",
    "resnet8_fmnist",
    "resnet8_fmnist_bn",
    "mbv2_fmnist",
    "vit_tiny_fmnist",
    "seg_fmnist",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="Rewrite the golden files under tests/golden from the current behaviour.",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def sample(name: str) -> Path:
    return SAMPLES / f"{name}.onnx"


def magnitude_prune(model: Path, out: Path, ratio: str = "0.3") -> list[str]:
    """CLI words of a quick, data-free prune of ``model`` into ``out``."""
    return ["prune", str(model), "-o", str(out), "--criterion", "magnitude-l2", "--ratio", ratio]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``onnx-cswap ARGS`` in a fresh interpreter, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "onnx_cswap", *args], capture_output=True, text=True, check=False
    )
