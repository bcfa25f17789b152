"""The ``onnx-cswap`` command line: each command parses, calls the library, prints."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from onnx_cswap import __version__
from onnx_cswap.bench import benchmark
from onnx_cswap.criteria import CRITERIA, PruneSettings
from onnx_cswap.data import Dataset, input_specs, load_npz, sidecar_path
from onnx_cswap.errors import BadInputError, CswapError, first_line
from onnx_cswap.evaluate import evaluate_model
from onnx_cswap.graph import analyse
from onnx_cswap.journal import Journal
from onnx_cswap.masking import build_masked_model
from onnx_cswap.metrics import METRICS
from onnx_cswap.modelio import (
    check_output_path,
    load_model,
    save_model_atomically,
    write_bytes_atomically,
)
from onnx_cswap.progress import ProgressLine
from onnx_cswap.prune import CHOICES, PruneOutcome, prune
from onnx_cswap.report import build_report
from onnx_cswap.runtime import CPU, DEVICES, RuntimeConfig, resolve_providers, share_thread_pool
from onnx_cswap.sweep import SweepResult, plot, sweep
from onnx_cswap.tables import render_table


def _report_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into one line on stderr and the contract's exit codes."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except CswapError as exc:
            click.echo(f"onnx-cswap: error: {first_line(exc)}", err=True)
            sys.exit(exc.exit_code)
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly, as the Python docs advise.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        except (KeyboardInterrupt, click.exceptions.Exit, click.ClickException):
            raise
        except Exception as exc:
            if os.environ.get("ONNX_CSWAP_DEBUG"):
                raise
            click.echo(
                f"onnx-cswap: internal error: {type(exc).__name__}: {first_line(exc)} "
                "(set ONNX_CSWAP_DEBUG=1 for the traceback)",
                err=True,
            )
            sys.exit(1)

    return wrapper


def _show_warning(message: Any, category: Any, *_: Any, **__: Any) -> None:
    click.echo(f"onnx-cswap: warning: {message}", err=True)


def _data_path(model: Path, given: Path | None, role: str, option: str) -> Path | None:
    """The data file given on the command line, else the model's sidecar, said so on stderr."""
    if given is not None:
        return given
    found = sidecar_path(model, role)
    if found is not None:
        click.echo(f"using {found} as {option}", err=True)
    return found


def _required_data_path(model: Path, given: Path | None, role: str, option: str) -> Path:
    found = _data_path(model, given, role, option)
    if found is None:
        raise BadInputError(f"no {option} given and no {model.stem}.{role}.npz beside the model")
    return found


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="onnx-cswap")
def main() -> None:
    """Structured pruning of ONNX models with C-SWAP: causal ablation and per-class tests."""
    warnings.showwarning = _show_warning


# Set by the console script: the command owns its process, so the commands that hold
# many sessions may make them share one thread pool (onnxruntime then refuses any other
# kind of session in the process, which a caller of ``main`` may still want to make).
_own_process = False


def run() -> None:
    """The ``onnx-cswap`` command, in a process of its own."""
    global _own_process
    _own_process = True
    main()


def _share_thread_pool_in_own_process(device: str) -> None:
    """For prune and sweep on the CPU: one pool for their many sessions
    (tools/bench_pool.py). Not for bench, whose latencies are those of a session with a
    pool of its own, nor with CUDA, where it was never measured."""
    if _own_process and resolve_providers(device) == [CPU]:
        share_thread_pool()


device_option = click.option(
    "--device",
    type=click.Choice(DEVICES),
    default="auto",
    show_default=True,
    help="Where onnxruntime runs: CUDA when available (auto), or forced.",
)


@main.command("eval")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--data",
    "data",
    type=click.Path(path_type=Path),
    help="Data .npz (default: MODEL's .test.npz sidecar).",
)
@click.option(
    "--metric", type=click.Choice(METRICS), help="Default: miou for N×H×W labels, else accuracy."
)
@click.option(
    "--reference", type=click.Path(path_type=Path), help="Reference model for --metric agreement."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@device_option
@_report_errors
def eval_command(
    model: Path,
    data: Path | None,
    metric: str | None,
    reference: Path | None,
    as_json: bool,
    device: str,
) -> None:
    """Evaluate MODEL on labelled data with onnxruntime."""
    if metric == "agreement" and reference is None:
        raise BadInputError("the agreement metric needs a reference model (--reference)")
    proto = load_model(model)
    data = _required_data_path(model, data, "test", "--data")
    dataset = load_npz(data, input_specs(proto))
    reference_proto = load_model(reference) if reference is not None else None
    result = evaluate_model(proto, dataset, metric, reference_proto, RuntimeConfig(device=device))
    if as_json:
        payload = {
            result.metric.name: result.metric.value,
            "samples": result.metric.samples,
            "provider": result.provider,
            "model": str(model),
            "data": str(data),
        }
        click.echo(json.dumps(payload))
    else:
        click.echo(f"running on {result.provider}", err=True)
        click.echo(
            f"{result.metric.name}: {result.metric.value:.4f} ({result.metric.samples} samples)"
        )


@main.command("inspect")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--json",
    "json_out",
    type=click.Path(path_type=Path),
    help="Write the groups as JSON ('-': stdout).",
)
@_report_errors
def inspect_command(model: Path, json_out: Path | None) -> None:
    """List MODEL's channel groups: what can be pruned, and why the rest is frozen."""
    proto = load_model(model)
    analysis = analyse(proto)
    payload = analysis.to_json()
    if json_out is not None:
        text = json.dumps(payload, indent=2) + "\n"
        if str(json_out) == "-":
            click.echo(text, nl=False)
            return
        write_bytes_atomically(check_output_path(json_out, model), text.encode())
    rows = [
        (g.id, g.kind, g.size, g.prunable, g.params_per_unit, g.macs_per_unit, g.name, g.reason)
        for g in analysis.groups
    ]
    headers = (
        "id",
        "kind",
        "size",
        "prunable",
        "params/unit",
        "MACs/unit",
        "name",
        "frozen because",
    )
    click.echo(render_table(headers, rows, right={0, 2, 4, 5}))
    prunable = sum(g.prunable for g in analysis.groups)
    click.echo(
        f"\n{model.name}: {analysis.params:,} parameters, {analysis.macs:,} MACs per sample; "
        f"{prunable} of {len(analysis.groups)} groups prunable; up to "
        f"{analysis.prunable_param_fraction():.1%} of the parameters can be removed"
    )


def _choice(name: str) -> click.Choice:
    return click.Choice(CHOICES[name])


@main.command("prune")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), required=True, help="Pruned model."
)
@click.option(
    "--data", type=click.Path(path_type=Path), help="Calibration .npz (default: sidecar)."
)
@click.option("--eval-data", type=click.Path(path_type=Path), help="Test .npz (default: sidecar).")
@click.option("--criterion", type=click.Choice(list(CRITERIA)), default="cswap", show_default=True)
@click.option("--ratio", type=float, help="Fraction of parameters to remove (C-SWAP: optional).")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Test level.")
@click.option(
    "--margin",
    type=float,
    default=0.0,
    show_default=True,
    help="Critical only if sigma drops by more than this fraction (0: any drop).",
)
@click.option(
    "--reference",
    type=_choice("reference"),
    default="current",
    show_default=True,
    help="Compare sigma with the model as pruned so far, or with the unpruned one.",
)
@click.option(
    "--test",
    "test_name",
    type=_choice("test"),
    default="wilcoxon",
    show_default=True,
    help="Paired one-sided test of sigma before and after an ablation.",
)
@click.option(
    "--inference",
    type=_choice("inference"),
    default="per-class",
    show_default=True,
    help="One test per class (a unit is kept if any class needs it), or one overall.",
)
@click.option(
    "--order",
    type=_choice("order"),
    default="magnitude",
    show_default=True,
    help="Order of the units inside a layer.",
)
@click.option(
    "--layer-order",
    type=_choice("layer_order"),
    default="forward",
    show_default=True,
    help="Visit the layers from input to output, or back.",
)
@click.option(
    "--scheme",
    type=_choice("scheme"),
    default="progressive",
    show_default=True,
    help="progressive (C-SWAP), ranked once, or greedy (quadratic).",
)
@click.option(
    "--correction",
    type=_choice("correction"),
    default="none",
    show_default=True,
    help="Multiple-testing correction over the classes.",
)
@click.option(
    "--segmentation-score",
    type=_choice("segmentation_score"),
    default="probability",
    show_default=True,
    help="Segmentation sigma: per-pixel true-class probability, or per-image mIoU.",
)
@click.option(
    "--samples-per-class",
    type=int,
    default=32,
    show_default=True,
    help="Calibration samples used per class.",
)
@click.option(
    "--small-classes",
    type=_choice("small_classes"),
    default="error",
    show_default=True,
    help="Classes with too few samples for the test: fail, or leave them out.",
)
@click.option(
    "--round-to",
    type=int,
    default=1,
    show_default=True,
    help="Keep channel counts multiples of N (hardware-friendly).",
)
@click.option(
    "--engine",
    type=_choice("engine"),
    default="downstream",
    show_default=True,
    help="downstream: rerun only what a group's mask can change.",
)
@click.option(
    "--complete-tests",
    is_flag=True,
    help="C-SWAP's progressive passes: score every class for every unit, even once one "
    "class shows it Critical (full p-values and xi in the report; slower; same decisions).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--report", type=click.Path(path_type=Path), help="Write the JSON report here.")
@click.option("--emit-masked", type=click.Path(path_type=Path), help="Also write the masked model.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUTPUT.journal.")
@device_option
@_report_errors
def prune_command(
    model: Path,
    output: Path,
    data: Path | None,
    eval_data: Path | None,
    criterion: str,
    ratio: float | None,
    alpha: float,
    margin: float,
    reference: str,
    test_name: str,
    inference: str,
    order: str,
    layer_order: str,
    scheme: str,
    correction: str,
    segmentation_score: str,
    samples_per_class: int,
    small_classes: str,
    round_to: int,
    engine: str,
    complete_tests: bool,
    seed: int,
    report: Path | None,
    emit_masked: Path | None,
    resume: bool,
    device: str,
) -> None:
    """Prune MODEL and write a smaller, verified model to OUTPUT.

    Every evaluation is journaled in OUTPUT.journal until the run succeeds; after an
    interruption, the same command with --resume ends with the same bytes.
    """
    started = time.perf_counter()
    outputs = [p for p in (output, report, emit_masked) if p is not None]
    for path in outputs:
        check_output_path(path, model)
    settings = PruneSettings(
        criterion=criterion,
        ratio=ratio,
        alpha=alpha,
        margin=margin,
        reference=reference,
        test=test_name,
        inference=inference,
        order=order,
        layer_order=layer_order,
        scheme=scheme,
        correction=correction,
        segmentation_score=segmentation_score,
        samples_per_class=samples_per_class,
        small_classes=small_classes,
        round_to=round_to,
        engine=engine,
        complete_tests=complete_tests,
        seed=seed,
    )
    model_bytes = model.read_bytes() if model.is_file() else b""
    proto = load_model(model)
    specs = input_specs(proto)
    calib = _load_optional(_data_path(model, data, "calib", "--data"), specs)
    test = _load_optional(_data_path(model, eval_data, "test", "--eval-data"), specs)
    _share_thread_pool_in_own_process(device)
    config = RuntimeConfig(device=device)
    header = {
        "tool": __version__,
        "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "calib_sha256": _file_digest(calib.source) if calib is not None else None,
        "settings": dataclasses.asdict(settings),
    }
    journal = Journal(output.with_name(output.name + ".journal"), header, resume)
    progress = ProgressLine()
    try:
        outcome = prune(proto, settings, calib, test, config, progress=progress, journal=journal)
    except KeyboardInterrupt:
        journal.close()
        click.echo("\ninterrupted; continue with the same command and --resume", err=True)
        sys.exit(130)
    except BaseException:
        journal.close()
        raise
    finally:
        progress.close()
    payload = build_report(outcome, settings, model_bytes, time.perf_counter() - started, device)
    # Everything is computed and verified; only now is anything written.
    save_model_atomically(outcome.pruned, output)
    if emit_masked is not None:
        save_model_atomically(build_masked_model(outcome.analysis, outcome.keep), emit_masked)
    if report is not None:
        write_bytes_atomically(report, (json.dumps(payload, indent=2) + "\n").encode())
    journal.close(remove=True)
    click.echo(_summary(model, output, settings, outcome))


def _file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _load_optional(path: Path | None, specs: list) -> Dataset | None:
    return None if path is None else load_npz(path, specs)


def _summary(model: Path, output: Path, settings: PruneSettings, outcome: PruneOutcome) -> str:
    analysis = outcome.analysis
    target = f"ratio {settings.ratio:g}" if settings.ratio is not None else "natural stop"
    lines = [
        f"{model.name}: {settings.criterion} ({target}, alpha {settings.alpha:g}) "
        f"on {outcome.provider}, {outcome.evaluations} evaluations",
        "",
    ]
    rows = []
    for group in analysis.groups:
        keep = outcome.keep.get(group.id)
        if group.prunable and keep is not None:
            rows.append(
                (group.id, group.kind, group.name, group.size, int(keep.sum()), int((~keep).sum()))
            )
    lines.append(
        render_table(("id", "kind", "name", "size", "kept", "removed"), rows, right={0, 3, 4, 5})
    )
    (p0, p1), (m0, m1) = outcome.params, outcome.macs
    lines += [
        "",
        f"parameters {p0:,} -> {p1:,} ({(p1 - p0) / p0:+.1%})",
        f"MACs       {m0:,} -> {m1:,} ({(m1 - m0) / max(m0, 1):+.1%})",
    ]
    for split, values in outcome.metrics.items():
        lines.append(
            f"{values['metric']} on {split}: {values['before']:.4f} -> {values['after']:.4f}"
        )
    lines.append(
        f"wrote {output} (pruned = masked, max relative difference "
        f"{outcome.verification_error:.1e})"
    )
    return "\n".join(lines)


def _float_list(text: str) -> list[float]:
    try:
        return [float(item) for item in text.split(",") if item.strip()]
    except ValueError as exc:
        raise BadInputError(f"not a comma-separated list of numbers: {text!r}") from exc


@main.command("sweep")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--data", type=click.Path(path_type=Path), help="Calibration .npz (default: sidecar)."
)
@click.option("--eval-data", type=click.Path(path_type=Path), help="Test .npz (default: sidecar).")
@click.option("--criteria", default="cswap,magnitude-l2,random", show_default=True)
@click.option("--ratios", default="0.1,0.2,0.3,0.4,0.5,0.6", show_default=True)
@click.option("--r-max", type=float, help="Upper end of the SAUCE range (default: largest ratio).")
@click.option("--alpha", type=float, default=0.05, show_default=True)
@click.option("--margin", type=float, default=0.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--report", type=click.Path(path_type=Path), help="Write curves and SAUCE as JSON.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), help="Write a PNG plot.")
@device_option
@_report_errors
def sweep_command(
    model: Path,
    data: Path | None,
    eval_data: Path | None,
    criteria: str,
    ratios: str,
    r_max: float | None,
    alpha: float,
    margin: float,
    seed: int,
    report: Path | None,
    plot_path: Path | None,
    device: str,
) -> None:
    """Metric against % of parameters removed, per criterion, with SAUCE."""
    _share_thread_pool_in_own_process(device)
    names = [c.strip() for c in criteria.split(",") if c.strip()]
    unknown = [c for c in names if c not in CRITERIA]
    if unknown:
        raise BadInputError(
            f"unknown criteria {', '.join(unknown)} (choose from {', '.join(CRITERIA)})"
        )
    grid = _float_list(ratios)
    for path in (report, plot_path):
        if path is not None:
            check_output_path(path, model)
    proto = load_model(model)
    specs = input_specs(proto)
    calib = load_npz(_required_data_path(model, data, "calib", "--data"), specs)
    test = load_npz(_required_data_path(model, eval_data, "test", "--eval-data"), specs)

    def progress(criterion: str, target: float, removed: float, metric: float) -> None:
        click.echo(
            f"  {criterion} @ {target:g}: removed {removed:.1%}, metric {metric:.4f}", err=True
        )

    base = PruneSettings(alpha=alpha, margin=margin, seed=seed)
    result = sweep(
        proto, names, grid, calib, test, base, RuntimeConfig(device=device), r_max, progress
    )
    if report is not None:
        payload = {"model": str(model), **result.to_json()}
        write_bytes_atomically(report, (json.dumps(payload, indent=2) + "\n").encode())
    if plot_path is not None:
        plot(result, str(plot_path), model.stem)
    click.echo(render_sweep(result))


def render_sweep(result: SweepResult) -> str:
    headers = ["criterion", *(f"{r:g}" for r in result.ratios), "SAUCE"]
    rows = [
        [c.criterion, *(f"{p['metric']:.4f}" for p in c.points), f"{c.sauce:.4f}"]
        for c in result.curves
    ]
    return (
        f"{result.metric} at each target ratio (unpruned {result.unpruned:.4f}); "
        f"SAUCE over [0, {result.r_max:g}]\n"
        + render_table(headers, rows, right=set(range(1, len(headers))))
    )


@main.command("bench")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("other", type=click.Path(path_type=Path), required=False)
@click.option("--batch", "batches", default="1,32", show_default=True, help="Batch sizes.")
@click.option("--runs", type=int, default=50, show_default=True)
@click.option("--warmup", type=int, default=5, show_default=True)
@click.option("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: all).")
@device_option
@_report_errors
def bench_command(
    model: Path,
    other: Path | None,
    batches: str,
    runs: int,
    warmup: int,
    threads: int,
    device: str,
) -> None:
    """Latency (median, p90) and throughput of MODEL, and of OTHER side by side."""
    sizes = [int(b) for b in _float_list(batches)]
    if not sizes or min(sizes) < 1 or runs < 1:
        raise BadInputError("--batch needs positive sizes and --runs at least 1")
    models = {str(model): load_model(model)}
    if other is not None:
        models[str(other)] = load_model(other)
    config = RuntimeConfig(device=device, threads=threads)
    timings = benchmark(models, sizes, runs, warmup, config)
    rows = []
    for timing in timings:
        base = next(t for t in timings if t.batch == timing.batch)
        speedup = f"{base.median_ms / timing.median_ms:.2f}x" if other is not None else ""
        rows.append(
            (
                Path(timing.model).name,
                timing.batch,
                f"{timing.median_ms:.3f}",
                f"{timing.p90_ms:.3f}",
                f"{timing.throughput:,.0f}",
                speedup,
            )
        )
    headers = ("model", "batch", "median ms", "p90 ms", "samples/s", "speed-up")
    click.echo(render_table(headers, rows, right={1, 2, 3, 4, 5}))
