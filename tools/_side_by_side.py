"""Two ways of running the same prune, timed side by side (bench_pool, bench_fold)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

#: One way: (model name, ratio or None for the natural stop) -> (seconds, pruned bytes).
Way = Callable[[str, float | None], tuple[float, bytes]]


def side_by_side_rows(
    models: Sequence[str], ratio: float, rounds: int, before: Way, after: Way
) -> list[str]:
    """Table rows ``| model | C-SWAP to | before | after | speed-up |`` for every model
    at the natural stop, then at ``ratio``; printed as they come."""
    rows = []
    for target in (None, ratio):
        for name in models:
            rows.append(_row(name, target, rounds, before, after))
            print(rows[-1], flush=True)
    return rows


def _row(name: str, ratio: float | None, rounds: int, before: Way, after: Way) -> str:
    """Each way the fastest of ``rounds``, the two interleaved (which goes first
    alternates, against drift); both must write the same bytes in every round."""
    best = {before: float("inf"), after: float("inf")}
    for round_ in range(rounds):
        pruned = {}
        for way in (before, after) if round_ % 2 == 0 else (after, before):
            seconds, pruned[way] = way(name, ratio)
            best[way] = min(best[way], seconds)
        if pruned[before] != pruned[after]:
            raise SystemExit(f"{name}: the two ways wrote different models")
    stop = "natural stop" if ratio is None else f"{ratio:.0%}"
    return (
        f"| {name} | {stop} | {best[before]:.2f} s | {best[after]:.2f} s "
        f"| {best[before] / best[after]:.2f}× |"
    )
