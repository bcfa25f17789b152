"""Early stopping: off by default; when on, a unit is kept after a first look only if
that look already shows it Critical at α/10, and everything else is decided as usual."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import SAMPLES, sample
from onnx_cswap.ablation import AblationEvaluator
from onnx_cswap.cli import main
from onnx_cswap.criteria import PruneSettings
from onnx_cswap.criteria.cswap import FIRST_LOOK_ALPHA
from onnx_cswap.data import input_specs, load_npz
from onnx_cswap.errors import BadInputError
from onnx_cswap.graph import analyse
from onnx_cswap.modelio import load_model
from onnx_cswap.prune import calibration_subset, prune


def load(per_class: int, name: str = "resnet8_fmnist") -> tuple:
    model = load_model(sample(name))
    calib = load_npz(SAMPLES / f"{name}.calib.npz", input_specs(model))
    return model, calibration_subset(calib, per_class, seed=0)


@pytest.mark.parametrize("downstream", [True, False])
def test_scores_of_a_subset_are_those_samples_scores(downstream: bool) -> None:
    model, calib = load(6)
    analysis = analyse(model)
    evaluator = AblationEvaluator(analysis, calib, downstream=downstream)
    keep = {g.id: np.ones(g.size, dtype=bool) for g in analysis.groups if g.prunable}
    group = next(iter(keep))
    keep[group][3] = False
    samples = np.array([0, 5, 7, 30, 59])
    whole = evaluator.scores(keep, varying=group)
    part = evaluator.scores(keep, varying=group, samples=samples)
    np.testing.assert_allclose(part, whole[samples], atol=1e-6)
    assert evaluator.samples_scored == len(calib) + len(samples)


def test_early_stop_scores_fewer_samples_and_only_keeps_units_early() -> None:
    model, calib = load(16, "digits_cnn")
    plain = prune(model, PruneSettings(complete_tests=True), calib)
    early = prune(model, PruneSettings(early_stop=8, complete_tests=True), calib)
    assert plain.samples_scored == plain.evaluations * len(calib)
    assert early.samples_scored < plain.samples_scored
    first_looks = [d for d in early.selection.decisions if d.early]
    assert first_looks, "some digits units are Critical on 8 samples per class"
    for decision in first_looks:
        assert decision.category == "critical" and not decision.removed
        assert min(decision.p_lower) < 0.05 * FIRST_LOOK_ALPHA
    assert not any(d.early for d in plain.selection.decisions)
    # Every unit is still tested exactly once, in the same order.
    assert [(d.group, d.unit) for d in early.selection.decisions][:10] == [
        (d.group, d.unit) for d in plain.selection.decisions
    ][:10]


def test_early_stop_reaches_a_ratio_and_is_reproducible() -> None:
    model, calib = load(16, "digits_cnn")
    settings = PruneSettings(ratio=0.3, early_stop=8)
    first, second = (prune(model, settings, calib) for _ in range(2))
    assert first.removed_fraction >= 0.3
    assert first.pruned.SerializeToString() == second.pruned.SerializeToString()


@pytest.mark.parametrize("per_class", [-1, 7])
def test_a_first_look_too_small_to_stop_is_bad_input(per_class: int) -> None:
    model, calib = load(6)
    with pytest.raises(BadInputError, match="--early-stop"):
        prune(model, PruneSettings(early_stop=per_class), calib)


def test_cli_early_stop_reports_first_looks_and_samples_scored(tmp_path: Path) -> None:
    out, report = tmp_path / "pruned.onnx", tmp_path / "report.json"
    result = CliRunner().invoke(
        main,
        [
            "prune",
            str(sample("digits_cnn")),
            "-o",
            str(out),
            "--early-stop",
            "8",
            "--samples-per-class",
            "16",
            "--report",
            str(report),
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(report.read_text())
    assert payload["settings"]["early_stop"] == 8
    units = [u for g in payload["groups"] for u in g["units"]]
    assert any(u.get("early") for u in units)
    assert all(u["category"] == "critical" for u in units if u.get("early"))
    assert 0 < payload["samples_scored"] < payload["evaluations"] * 160


def test_cli_too_small_first_look_exits_2_with_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["prune", str(sample("digits_cnn")), "-o", str(tmp_path / "p.onnx"), "--early-stop", "3"],
    )
    assert result.exit_code == 2
    assert "--early-stop 3 is too few" in result.output
    assert not (tmp_path / "p.onnx").exists()
