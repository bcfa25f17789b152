"""The downstream engine changes nothing: same scores (to float noise), same decisions,
same pruned bytes as running the whole model for every ablation."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import SAMPLES, sample
from onnx_cswap.ablation import AblationEvaluator
from onnx_cswap.cli import main
from onnx_cswap.criteria import PruneSettings
from onnx_cswap.data import input_specs, load_npz
from onnx_cswap.graph import analyse
from onnx_cswap.journal import Journal
from onnx_cswap.masking import mask_feeds
from onnx_cswap.modelio import load_model
from onnx_cswap.prune import calibration_subset, prune

MODELS = [n for n in ("digits_cnn", "resnet8_fmnist_bn", "mbv2_fmnist") if sample(n).exists()]


def load(name: str) -> tuple:
    model = load_model(sample(name))
    specs = input_specs(model)
    calib = load_npz(SAMPLES / f"{name}.calib.npz", specs)
    return model, calibration_subset(calib, 6, seed=0)  # 6 per class keeps CI quick


@pytest.mark.parametrize("name", MODELS)
def test_downstream_scores_equal_full_scores(name: str) -> None:
    model, calib = load(name)
    analysis = analyse(model)
    evaluator = AblationEvaluator(analysis, calib)
    keep = {g.id: np.ones(g.size, dtype=bool) for g in analysis.groups if g.prunable}
    rng = np.random.default_rng(0)
    for group_id in keep:
        for unit in rng.choice(len(keep[group_id]), 2, replace=False):
            trial = {g: m.copy() for g, m in keep.items()}
            trial[group_id][unit] = False
            np.testing.assert_allclose(
                evaluator.scores(trial, varying=group_id), evaluator.scores(trial), atol=1e-5
            )


@pytest.mark.parametrize("name", [n for n in MODELS if n != "mbv2_fmnist"])
@pytest.mark.parametrize("criterion", ["cswap", "taylor"])
def test_downstream_engine_gives_the_same_model(name: str, criterion: str) -> None:
    model, calib = load(name)
    fast = PruneSettings(criterion=criterion, ratio=0.15 if criterion == "taylor" else None)
    plain = dataclasses.replace(fast, engine="full")
    outcomes = [prune(model, settings, calib) for settings in (fast, plain)]
    decisions = [
        [(d.group, d.unit, d.category, d.removed) for d in o.selection.decisions] for o in outcomes
    ]
    assert decisions[0] == decisions[1]
    assert outcomes[0].pruned.SerializeToString() == outcomes[1].pruned.SerializeToString()


@pytest.mark.parametrize("name", ["vit_tiny_fmnist", "seg_fmnist"])
def test_regions_with_other_units_removed_score_as_the_whole_model(name: str) -> None:
    """With units of the other groups removed (folded into the region's weights: the
    ViT's MatMuls, the U-Net's transposed convolution and concatenated skips), each
    group's region scores as the whole masked model."""
    model, calib = load(name)
    calib = calib.subset(np.arange(8))
    analysis = analyse(model)
    evaluator = AblationEvaluator(analysis, calib)
    rng = np.random.default_rng(0)
    keep = {g.id: rng.random(g.size) > 0.2 for g in analysis.groups if g.prunable}
    for group_id in list(keep)[::3]:
        trial = {g: m.copy() for g, m in keep.items()}
        trial[group_id][np.flatnonzero(trial[group_id])[0]] = False
        np.testing.assert_allclose(
            evaluator.scores(trial, varying=group_id), evaluator.scores(trial), atol=1e-5
        )


def test_folding_the_fixed_masks_changes_nothing(monkeypatch) -> None:
    """Regions with the other groups' masks folded into their weights (the default)
    decide as regions fed every mask."""
    model, calib = load("resnet8_fmnist_bn")
    settings = PruneSettings(ratio=0.2)
    folded = prune(model, settings, calib)
    monkeypatch.setattr("onnx_cswap.downstream.FOLD_FIXED_MASKS", False)
    fed = prune(model, settings, calib)
    assert folded.pruned.SerializeToString() == fed.pruned.SerializeToString()
    assert folded.evaluations == fed.evaluations


@pytest.mark.parametrize("batch", [1, 4])
def test_a_model_with_a_fixed_batch_prunes_alike_with_both_engines(batch: int) -> None:
    """Class subsets are not multiples of a fixed batch: the last run is padded; the
    downstream region's mask inputs do not count as batch sizes."""
    model, calib = load("digits_cnn")
    for value in (*model.graph.input, *model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_param")
        dim.dim_value = batch
    del model.graph.value_info[:]
    outcomes = [prune(model, PruneSettings(engine=e), calib) for e in ("downstream", "full")]
    assert outcomes[0].pruned.SerializeToString() == outcomes[1].pruned.SerializeToString()
    assert outcomes[0].evaluations == outcomes[1].evaluations > 0


def test_a_group_too_large_to_cache_is_ablated_on_the_whole_model(monkeypatch) -> None:
    """Past the cache budget a group runs on the whole model: same bytes, and the
    report says which groups and why."""
    model, calib = load("digits_cnn")
    cached = prune(model, PruneSettings(), calib)
    monkeypatch.setattr("onnx_cswap.ablation.BOUNDARY_BUDGET", 0)
    with pytest.warns(RuntimeWarning, match="cache budget"):
        uncached = prune(model, PruneSettings(), calib)
    assert uncached.pruned.SerializeToString() == cached.pruned.SerializeToString()
    assert uncached.evaluations == cached.evaluations
    tested = {d.group for d in uncached.selection.decisions}
    noted = [w for w in uncached.warnings if "cache budget" in w]
    assert len(noted) == len(tested) > 0
    assert not any("cache budget" in w for w in cached.warnings)


@pytest.mark.filterwarnings("ignore:group .* cache budget")
def test_one_group_at_a_time_holds_cached_activations_within_the_budget() -> None:
    """With a budget between the groups' needs, the groups past it run on the whole
    model, the others on their region: the same scores (to float noise). Only the
    group under test holds cached activations; none while a group past it is tested."""
    model, calib = load("resnet8_fmnist_bn")
    analysis = analyse(model)
    keep = {g.id: np.ones(g.size, dtype=bool) for g in analysis.groups if g.prunable}
    unbounded = AblationEvaluator(analysis, calib)
    sizes = {}
    for group_id in keep:
        region = unbounded._region(group_id, mask_feeds(analysis, keep))
        sizes[group_id] = region.boundary_bytes(calib, mask_feeds(analysis, keep))
    budget = int(np.median(list(sizes.values())))
    bounded = AblationEvaluator(analysis, calib, boundary_budget=budget)
    for group_id in keep:
        trial = {g: m.copy() for g, m in keep.items()}
        trial[group_id][0] = False
        np.testing.assert_allclose(
            bounded.scores(trial, varying=group_id),
            unbounded.scores(trial, varying=group_id),
            atol=1e-5,
        )
        holding = [g for g, r in bounded._regions.items() if r._boundary is not None]
        assert holding == ([group_id] if sizes[group_id] <= budget else [])
    over = [g for g, size in sizes.items() if size > budget]
    assert over and len(over) < len(sizes)
    assert [int(note.split()[1].rstrip(":")) for note in bounded.notes] == over


def test_sessions_past_their_budget_are_closed_and_rebuilt_alike() -> None:
    """With no room for sessions, only the group under test keeps its region open; a
    group tested again gets the same region rebuilt, and the same scores."""
    model, calib = load("resnet8_fmnist_bn")
    analysis = analyse(model)
    keep = {g.id: np.ones(g.size, dtype=bool) for g in analysis.groups if g.prunable}
    roomy = AblationEvaluator(analysis, calib)
    tight = AblationEvaluator(analysis, calib, session_budget=0)
    for group_id in [*keep, *keep]:  # every group twice: the second visit rebuilds
        trial = {g: m.copy() for g, m in keep.items()}
        trial[group_id][1] = False
        np.testing.assert_array_equal(
            tight.scores(trial, varying=group_id), roomy.scores(trial, varying=group_id)
        )
        assert list(tight._regions) == [group_id]
    assert len(roomy._regions) == len(keep)


def test_the_command_lines_shared_thread_pool_changes_nothing(tmp_path) -> None:
    """The command's prune makes its sessions share one intra-op pool; in-process (the
    Python API's default) each session has its own: the same model either way."""
    shared, separate = tmp_path / "shared.onnx", tmp_path / "separate.onnx"
    command = (
        "import sys\n"
        "import onnx_cswap.cli as cli, onnx_cswap.runtime as runtime\n"
        "try:\n"
        "    cli.run()\n"
        "except SystemExit as done:\n"
        "    print(done.code, runtime._thread_pool)\n"
    )
    args = ["prune", str(sample("digits_cnn")), "-o", str(shared), "--ratio", "0.3"]
    result = subprocess.run(
        [sys.executable, "-c", command, *args], capture_output=True, text=True, check=False
    )
    assert result.stdout.splitlines()[-1] == "0 shared", result.stderr  # after the summary
    args[3] = str(separate)
    in_process = CliRunner().invoke(main, args)
    assert in_process.exit_code == 0, in_process.output
    assert shared.read_bytes() == separate.read_bytes()


def test_sessions_made_with_session_options_run_beside_the_shared_pool() -> None:
    """Once the process has a shared pool (onnx-cswap's, or one made before it)
    onnxruntime refuses sessions with a pool of their own; ``session_options`` gives
    options that work."""
    code = (
        "import sys, numpy as np, onnxruntime as ort\n"
        "import onnx_cswap as oc\n"
        "from onnx_cswap.runtime import session_options\n"
        "if sys.argv[2] == 'made elsewhere':\n"
        "    ort.set_global_thread_pool_sizes(1, 1)\n"
        "oc.share_thread_pool()\n"
        "oc.Runner(oc.load_model(sys.argv[1]))\n"
        "cpu = ['CPUExecutionProvider']\n"
        "s = ort.InferenceSession(sys.argv[1], session_options(), providers=cpu)\n"
        "x = np.zeros([1, *s.get_inputs()[0].shape[1:]], np.float32)\n"
        "print(s.run(None, {s.get_inputs()[0].name: x})[0].shape)\n"
        "try:\n"
        "    ort.InferenceSession(sys.argv[1], providers=cpu)\n"
        "except Exception:\n"
        "    print('own pool refused')\n"
    )
    for pool in ("made by onnx-cswap", "made elsewhere"):
        result = subprocess.run(
            [sys.executable, "-c", code, str(sample("digits_cnn")), pool],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.strip().splitlines()  # onnxruntime prints its refusal too
        assert lines[0] == "(1, 10)" and lines[-1] == "own pool refused"


@pytest.mark.filterwarnings("ignore:group .* cache budget")
def test_a_resumed_run_notes_the_groups_past_the_budget(tmp_path) -> None:
    """Scores replayed from the journal skip the model, not the budget's notes."""
    model, calib = load("digits_cnn")
    analysis = analyse(model)
    keep = {g.id: np.ones(g.size, dtype=bool) for g in analysis.groups if g.prunable}
    notes = []
    for resume in (False, True):
        journal = Journal(tmp_path / "journal", {"run": 1}, resume=resume)
        evaluator = AblationEvaluator(analysis, calib, journal=journal, boundary_budget=0)
        for group_id in keep:
            trial = {g: m.copy() for g, m in keep.items()}
            trial[group_id][0] = False
            evaluator.scores(trial, varying=group_id)
        assert journal.replayed == (len(keep) if resume else 0)
        journal.close()
        notes.append(evaluator.notes)
    assert notes[0] == notes[1] != []
