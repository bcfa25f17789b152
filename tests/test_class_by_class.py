"""Class-by-class testing, on by default: a unit Critical for one class is kept whatever
the other classes show, so C-SWAP stops scoring it there. It must change nothing but
the work done: same decisions, same bytes, same evaluations as scoring every class."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import SAMPLES, run_cli, sample
from onnx_cswap.ablation import AblationEvaluator
from onnx_cswap.criteria import PruneSettings
from onnx_cswap.data import Dataset, input_specs, load_npz
from onnx_cswap.graph import analyse
from onnx_cswap.modelio import load_model
from onnx_cswap.prune import PruneOutcome, calibration_subset, prune


def load(name: str, per_class: int = 6) -> tuple:
    model = load_model(sample(name))
    calib = load_npz(SAMPLES / f"{name}.calib.npz", input_specs(model))
    return model, calibration_subset(calib, per_class, seed=0)


def without_class(data: Dataset, label: int, keep: int) -> Dataset:
    """``data`` with only ``keep`` samples of class ``label`` left."""
    members = np.flatnonzero(data.labels == label)
    return data.subset(np.setdiff1d(np.arange(len(data)), members[keep:]))


def decisions(outcome: PruneOutcome) -> list[tuple]:
    return [(d.group, d.unit, d.category, d.removed) for d in outcome.selection.decisions]


# (model, settings, samples per class): 6 suffice for p < 0.05 (2⁻⁶); Holm over 10
# classes needs p < 0.005, so 10. For segmentation: the first N images.
CASES = {
    "digits": ("digits_cnn", PruneSettings(), 6),
    "digits, holm": ("digits_cnn", PruneSettings(correction="holm"), 10),
    "digits, ratio": ("digits_cnn", PruneSettings(ratio=0.5), 6),
    "digits, margin": ("digits_cnn", PruneSettings(margin=0.02), 6),
    # Past every margin pass to the least harmful units; t-test for a second test.
    "digits, to 90%": ("digits_cnn", PruneSettings(ratio=0.9, test="ttest"), 6),
    "digits, original reference": ("digits_cnn", PruneSettings(reference="original"), 6),
    "resnet8 with BN, ratio": ("resnet8_fmnist_bn", PruneSettings(ratio=0.2), 6),
    # Segmentation: an image counts for every class it shows, so classes overlap; on 16
    # images some classes are too small and excluded, and their images still scored.
    "segmentation": ("seg_fmnist", PruneSettings(small_classes="exclude"), 16),
}


@pytest.mark.parametrize("case", list(CASES))
def test_class_by_class_decides_exactly_as_every_class_scored(case: str) -> None:
    name, settings, size = CASES[case]
    if name == "seg_fmnist":
        model, calib = load(name)
        calib = calib.subset(np.arange(size))
    else:
        model, calib = load(name, per_class=size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the segmentation case excludes small classes
        lazy = prune(model, settings, calib)
        complete = prune(model, dataclasses.replace(settings, complete_tests=True), calib)
    assert decisions(lazy) == decisions(complete)
    assert lazy.selection.notes == complete.selection.notes  # the same passes
    if case == "digits, to 90%":
        assert "least harmful" in lazy.selection.notes[-1]
    assert lazy.pruned.SerializeToString() == complete.pruned.SerializeToString()
    assert lazy.evaluations == complete.evaluations  # one per ablation, however scored
    assert lazy.samples_scored < complete.samples_scored
    scale = len(lazy.selection.decisions[0].p_lower) if settings.correction == "holm" else 1
    settled = [d for d in lazy.selection.decisions if None in d.p_lower]
    assert settled, "some units are settled before every class is scored"
    for decision in settled:
        assert decision.category == "critical" and not decision.removed
        tested = [p for p in decision.p_lower if p is not None]
        assert min(tested) * scale < settings.alpha
    for decision in lazy.selection.decisions:
        if decision.removed:  # its scores became the baseline: every class was scored
            assert None not in decision.p_lower


@pytest.mark.parametrize("downstream", [True, False])
def test_scores_of_a_subset_are_those_samples_scores(downstream: bool) -> None:
    model, calib = load("resnet8_fmnist")
    analysis = analyse(model)
    evaluator = AblationEvaluator(analysis, calib, downstream=downstream)
    keep = {g.id: np.ones(g.size, dtype=bool) for g in analysis.groups if g.prunable}
    group = next(iter(keep))
    keep[group][3] = False
    samples = np.array([0, 5, 7, 30, 59])
    whole = evaluator.scores(keep, varying=group)
    part = evaluator.scores(keep, varying=group, samples=samples)
    rest = evaluator.scores(keep, varying=group, samples=np.array([1, 2]), continued=True)
    np.testing.assert_array_equal(part, whole[samples])  # exact: class by class relies on it
    np.testing.assert_array_equal(rest, whole[[1, 2]])
    assert evaluator.samples_scored == len(calib) + len(samples) + 2
    assert evaluator.evaluations == 2  # the continued call is part of the second


def test_samples_in_no_tested_class_are_still_scored() -> None:
    """A class too small for the test is excluded, but its samples still count in ξ,
    which ranks units for the last step towards a ratio."""
    model, calib = load("digits_cnn")
    calib = without_class(calib, label=3, keep=2)
    settings = PruneSettings(ratio=0.6, small_classes="exclude")
    with pytest.warns(UserWarning, match="classes excluded from the tests: 3"):
        lazy = prune(model, settings, calib)
        complete = prune(model, dataclasses.replace(settings, complete_tests=True), calib)
    assert decisions(lazy) == decisions(complete)
    removed = [d for d in lazy.selection.decisions if d.removed]
    assert all(np.isfinite(d.xi) for d in removed)
    assert [d.xi for d in removed] == [
        d.xi for d in [d for d in complete.selection.decisions if d.removed]
    ]


def test_cli_reports_untested_classes_as_null_unless_complete(tmp_path: Path) -> None:
    runs = {}
    for label, extra in (("lazy", []), ("complete", ["--complete-tests"])):
        out, report = tmp_path / f"{label}.onnx", tmp_path / f"{label}.json"
        result = run_cli(
            "prune",
            str(sample("digits_cnn")),
            "-o",
            str(out),
            "--samples-per-class",
            "8",
            "--report",
            str(report),
            *extra,
        )
        assert result.returncode == 0, result.stderr
        runs[label] = (out.read_bytes(), json.loads(report.read_text()))
    assert runs["lazy"][0] == runs["complete"][0]
    lazy, complete = runs["lazy"][1], runs["complete"][1]
    assert lazy["settings"]["complete_tests"] is False
    assert complete["settings"]["complete_tests"] is True
    assert lazy["evaluations"] == complete["evaluations"]
    assert lazy["samples_scored"] < complete["samples_scored"]
    units = {label: [u for g in r[1]["groups"] for u in g["units"]] for label, r in runs.items()}
    assert any(None in u["p_lower"] for u in units["lazy"])
    assert not any(None in u["p_lower"] for u in units["complete"])
    assert [u["category"] for u in units["lazy"]] == [u["category"] for u in units["complete"]]
