"""`onnx-cswap prune` end to end on the digits model, every criterion and scheme."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from conftest import SAMPLE_NAMES, SAMPLES, magnitude_prune, run_cli, sample
from onnx_cswap.cli import main
from onnx_cswap.criteria import CRITERIA, PruneSettings
from onnx_cswap.data import Dataset, input_specs, load_npz
from onnx_cswap.modelio import load_model
from onnx_cswap.prune import prune

DIGITS = sample("digits_cnn")


@pytest.fixture(scope="module")
def digits_data() -> tuple:
    model = load_model(DIGITS)
    specs = input_specs(model)
    return (
        model,
        load_npz(SAMPLES / "digits_cnn.calib.npz", specs),
        load_npz(SAMPLES / "digits_cnn.test.npz", specs),
    )


def test_prune_magnitude_writes_a_smaller_verified_model(tmp_path: Path) -> None:
    before = hashlib.sha256(DIGITS.read_bytes()).hexdigest()
    out, report = tmp_path / "pruned.onnx", tmp_path / "report.json"
    result = run_cli(
        *magnitude_prune(DIGITS, out, "0.3"),
        "--report",
        str(report),
    )
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(DIGITS.read_bytes()).hexdigest() == before  # input untouched
    payload = json.loads(report.read_text())
    assert payload["params_after"] <= 0.7 * payload["params_before"]
    assert payload["macs_after"] < payload["macs_before"]
    assert payload["settings"]["criterion"] == "magnitude-l2"
    assert set(payload["metrics"]) == {"calib", "test"}
    assert payload["model_sha256"] == before
    group = next(g for g in payload["groups"] if g["removed"])
    assert sorted(group["kept"] + group["removed"]) == list(range(group["size"]))
    pruned = onnx.load(str(out))
    onnx.checker.check_model(pruned, full_check=True)
    assert any(p.key == "onnx_cswap" for p in pruned.metadata_props)
    assert "accuracy on test" in result.stdout


@pytest.mark.parametrize("name", [n for n in SAMPLE_NAMES if sample(n).exists()])
def test_pruned_sample_models_run_without_onnx_cswap(tmp_path: Path, name: str) -> None:
    out = tmp_path / "pruned.onnx"
    result = run_cli(
        *magnitude_prune(sample(name), out, "0.3"),
        "--data",
        str(SAMPLES / f"{name}.calib.npz"),
        "--eval-data",
        str(SAMPLES / f"{name}.calib.npz"),
    )
    assert result.returncode == 0, result.stderr
    script = (
        "import sys, numpy as np, onnxruntime as ort\n"
        "assert 'onnx_cswap' not in sys.modules\n"
        f"s = ort.InferenceSession({str(out)!r}, providers=['CPUExecutionProvider'])\n"
        f"d = np.load({str(SAMPLES / f'{name}.calib.npz')!r})\n"
        "y = s.run(None, {s.get_inputs()[0].name: d['x'][:16]})[0]\n"
        "print(y.shape[0], bool(np.isfinite(y).all()))\n"
    )
    run = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["16", "True"]


def test_cswap_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        out, report = tmp_path / f"{name}.onnx", tmp_path / f"{name}.json"
        result = run_cli(
            "prune",
            str(DIGITS),
            "-o",
            str(out),
            "--report",
            str(report),
            "--order",
            "random",
            "--seed",
            "3",
        )
        assert result.returncode == 0, result.stderr
        payload = json.loads(report.read_text())
        for timing in ("wall_time_s", "phases_s"):
            payload.pop(timing)
        runs.append((out.read_bytes(), payload))
    assert runs[0] == runs[1]


def test_cswap_natural_stop_keeps_accuracy(digits_data: tuple) -> None:
    model, calib, test = digits_data
    outcome = prune(model, PruneSettings(), calib, test)
    assert outcome.removed_fraction > 0.2
    assert outcome.metrics["test"]["after"] >= outcome.metrics["test"]["before"] - 0.01
    categories = {d.category for d in outcome.selection.decisions}
    assert "critical" in categories and categories & {"neutral", "detrimental"}
    for decision in outcome.selection.decisions:
        assert decision.removed == (decision.category != "critical")


@pytest.mark.parametrize(
    "settings",
    [
        PruneSettings(scheme="ranked"),
        PruneSettings(scheme="greedy", ratio=0.05),
        PruneSettings(inference="general"),
        PruneSettings(order="random", layer_order="reverse"),
        PruneSettings(test="ttest", correction="holm"),
        PruneSettings(test="sign", samples_per_class=16),
        PruneSettings(alpha=0.5),
        PruneSettings(ratio=0.5),
    ],
    ids=lambda s: f"{s.scheme}-{s.inference}-{s.order}-{s.test}-{s.alpha}-{s.ratio}",
)
def test_cswap_variants(digits_data: tuple, settings: PruneSettings) -> None:
    model, calib, test = digits_data
    outcome = prune(model, settings, calib, test)
    if settings.ratio is not None:
        assert outcome.removed_fraction >= settings.ratio
    assert outcome.evaluations > 0
    assert outcome.verification_error <= 1e-4


def test_larger_alpha_prunes_less(digits_data: tuple) -> None:
    model, calib, _ = digits_data
    strict = prune(model, PruneSettings(alpha=0.05), calib)
    loose = prune(model, PruneSettings(alpha=0.5), calib)
    assert loose.removed_fraction <= strict.removed_fraction


@pytest.mark.parametrize("criterion", sorted(set(CRITERIA) - {"cswap", "bn-gamma"}))
def test_ranking_criteria_reach_the_ratio(digits_data: tuple, criterion: str) -> None:
    model, calib, test = digits_data
    outcome = prune(model, PruneSettings(criterion=criterion, ratio=0.25), calib, test)
    assert 0.25 <= outcome.removed_fraction < 0.3


def test_bn_gamma_on_a_folded_model_is_bad_input(tmp_path: Path) -> None:
    result = run_cli(
        "prune",
        str(DIGITS),
        "-o",
        str(tmp_path / "o.onnx"),
        "--criterion",
        "bn-gamma",
        "--ratio",
        "0.2",
    )
    assert result.returncode == 2
    assert "BatchNormalization" in result.stderr


def test_unreachable_ratio_warns_and_prunes_what_it_can(digits_data: tuple) -> None:
    model, calib, _ = digits_data
    with pytest.warns(RuntimeWarning, match=r"not reached \(frozen groups"):
        outcome = prune(model, PruneSettings(criterion="magnitude-l2", ratio=0.9999), calib)
    assert all(mask.sum() >= 1 for mask in outcome.keep.values())


def test_emit_masked_model_computes_the_pruned_outputs(tmp_path: Path) -> None:
    out, masked = tmp_path / "p.onnx", tmp_path / "m.onnx"
    result = CliRunner().invoke(
        main,
        [
            *magnitude_prune(DIGITS, out, "0.3"),
            "--emit-masked",
            str(masked),
        ],
    )
    assert result.exit_code == 0, result.output
    import onnxruntime as ort

    x = np.load(SAMPLES / "digits_cnn.test.npz")["x"][:16]
    outputs = [
        ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        for p in (out, masked)
    ]
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--criterion", "magnitude-l2"], "needs --ratio"),
        (["--ratio", "1.5", "--criterion", "magnitude-l2"], "--ratio must be in [0, 1)"),
        (["--alpha", "0"], "--alpha must be in (0, 1)"),
    ],
)
def test_bad_settings_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "o.onnx"
    result = run_cli("prune", str(DIGITS), "-o", str(out), *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr.strip().splitlines()[-1]
    assert not out.exists()


def test_data_criterion_without_data_is_bad_input(tmp_path: Path) -> None:
    lonely = tmp_path / "digits.onnx"
    shutil.copy(DIGITS, lonely)  # no sidecar npz beside it
    result = run_cli("prune", str(lonely), "-o", str(tmp_path / "o.onnx"))
    assert result.returncode == 2
    assert "needs calibration data" in result.stderr
    assert not (tmp_path / "o.onnx").exists()


def test_output_equal_to_input_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    shutil.copy(DIGITS, model)
    before = model.read_bytes()
    result = run_cli(
        *magnitude_prune(model, model, "0.2"),
    )
    assert result.returncode == 2
    assert "the output path is the input file" in result.stderr
    assert model.read_bytes() == before


def test_output_in_a_missing_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "absent" / "o.onnx"
    result = run_cli(
        *magnitude_prune(DIGITS, out, "0.2"),
    )
    assert result.returncode == 2
    assert "does not exist" in result.stderr


@pytest.mark.parametrize("criterion", ["cswap", "taylor", "magnitude-l2"])
def test_sweep_shortcut_selects_what_separate_runs_select(
    digits_data: tuple, criterion: str
) -> None:
    """One C-SWAP path snapshotted at each ratio equals one run per ratio (and rankers
    scored once equal rankers scored per run)."""
    import dataclasses

    from onnx_cswap.criteria import select, select_for_ratios
    from onnx_cswap.prune import prepare
    from onnx_cswap.runtime import RuntimeConfig

    model, calib, _ = digits_data
    ratios = [0.2, 0.45, 0.6]
    base = PruneSettings(criterion=criterion, ratio=max(ratios))
    shared = select_for_ratios(prepare(model, base, calib, RuntimeConfig()), ratios)
    for ratio in ratios:
        settings = dataclasses.replace(base, ratio=ratio)
        alone = select(prepare(model, settings, calib, RuntimeConfig()))
        for group_id, mask in alone.keep.items():
            np.testing.assert_array_equal(shared[ratio].keep[group_id], mask)


def test_round_to_keeps_multiples_where_the_group_allows(digits_data: tuple) -> None:
    model, calib, _ = digits_data
    plain = prune(model, PruneSettings(criterion="magnitude-l2", ratio=0.4), calib)
    with pytest.warns(RuntimeWarning, match="round-to 8 restored units"):
        rounded = prune(
            model, PruneSettings(criterion="magnitude-l2", ratio=0.4, round_to=8), calib
        )
    for group_id, mask in rounded.keep.items():
        size = len(mask)
        assert mask.sum() % 8 == 0 or mask.sum() == size
        assert np.all(mask[plain.keep[group_id]])  # rounding only restores units
    assert rounded.params[1] >= plain.params[1]


def test_bench_prints_both_models_side_by_side(tmp_path: Path) -> None:
    out = tmp_path / "p.onnx"
    assert (
        run_cli(
            *magnitude_prune(DIGITS, out, "0.3"),
        ).returncode
        == 0
    )
    result = run_cli("bench", str(DIGITS), str(out), "--batch", "1,4", "--runs", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[:2] == ["model", "batch"]
    assert len(lines) == 5 and "1.00x" in lines[1]


def test_segmentation_score_options() -> None:
    """Both segmentation sigmas run; the smooth one sees harm that mIoU cannot."""
    from onnx_cswap.ablation import AblationEvaluator
    from onnx_cswap.graph import analyse

    name = "seg_fmnist"
    if not sample(name).exists():
        pytest.skip("segmentation sample not trained")
    model = load_model(sample(name))
    calib = load_npz(SAMPLES / f"{name}.calib.npz", input_specs(model)).subset(np.arange(16))
    analysis = analyse(model)
    keep = {g.id: np.ones(g.size, dtype=bool) for g in analysis.groups if g.prunable}
    group = next(iter(keep))
    keep[group][0] = False
    changes = {}
    for score in ("probability", "miou"):
        evaluator = AblationEvaluator(analysis, calib, segmentation_score=score)
        full = {g: np.ones_like(m) for g, m in keep.items()}
        changes[score] = np.abs(evaluator.scores(keep) - evaluator.scores(full))
    assert np.count_nonzero(changes["probability"]) >= np.count_nonzero(changes["miou"])
    assert np.count_nonzero(changes["probability"]) == len(calib)


def test_segmentation_without_labels_is_tested_on_its_own_predictions() -> None:
    """Unlabelled data: the unpruned model's per-pixel predictions are the targets, so
    σ is per image and each class is tested on the images it is predicted in."""
    from onnx_cswap.ablation import AblationEvaluator
    from onnx_cswap.graph import analyse

    name = "seg_fmnist"
    if not sample(name).exists():
        pytest.skip("segmentation sample not trained")
    model = load_model(sample(name))
    labelled = load_npz(SAMPLES / f"{name}.calib.npz", input_specs(model)).subset(np.arange(8))
    calib = Dataset(labelled.inputs, None, "unlabelled")
    evaluator = AblationEvaluator(analyse(model), calib)
    assert evaluator.targets.shape == labelled.labels.shape
    full = {g.id: np.ones(g.size, dtype=bool) for g in evaluator.analysis.groups if g.prunable}
    scores = evaluator.scores(full)
    assert scores.shape == (len(calib),)
    assert np.all(scores > 0.5)  # the model agrees with itself on most pixels
    for members in evaluator.class_members.values():
        assert members.max() < len(calib)
