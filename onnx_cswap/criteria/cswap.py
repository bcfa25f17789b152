"""C-SWAP: causal ablation with per-class statistical tests, pruning progressively.

Progressive scheme (the default, the poster's "relaxed greedy descent"): visit the
layers in turn; inside a layer visit the units in ascending weight magnitude; ablate
each unit on the *current* model (every earlier removal applied) and compare the
per-sample score σ before and after with a paired one-sided test, class by class.

- significantly lower for some class      → Critical: keep it;
- otherwise significantly higher for one  → Detrimental: remove it now;
- otherwise                                → Neutral: remove it now.

Compared schemes: ``ranked`` tests every unit once on the unpruned model and removes
the Neutral and Detrimental ones together; ``greedy`` re-tests every remaining unit
before each removal and removes the one whose ablation helps most (quadratic).

With a target ratio, C-SWAP goes on past its natural stop: further progressive passes
with a tighter α, then passes that tolerate a growing relative drop of σ (the margin δ:
a unit is Critical only if its ablation lowers σ by more than δσ, significantly), and
finally the units whose removal harms least (largest ξ) go first.
"""

from __future__ import annotations

import warnings

import numpy as np

from onnx_cswap.budget import ParamBudget
from onnx_cswap.criteria.base import PruneContext, Selection, UnitDecision
from onnx_cswap.criteria.magnitude import magnitude_scores
from onnx_cswap.errors import BadInputError
from onnx_cswap.stats import (
    CRITICAL,
    categorize,
    causal_effect,
    holm,
    minimum_samples,
    paired_pvalues,
)

#: Extra passes towards a target ratio: α divided by these first, then these margins.
ALPHA_DIVISORS = (10.0, 100.0)
MARGIN_SCHEDULE = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


class UnitTester:
    """Ablates units on the current model and classifies them."""

    def __init__(self, context: PruneContext) -> None:
        self.context = context
        self.settings = context.settings
        self.evaluator = context.evaluator
        if self.settings.inference == "general":
            self.class_index = [np.arange(len(self.evaluator.data))]
        else:
            self.class_index = self._class_index(self.evaluator.class_members)
        full = {g.id: np.ones(g.size, dtype=bool) for g in context.analysis.groups if g.prunable}
        self.original = self.evaluator.scores(full)  # σ of the unpruned model
        # Class by class: Critical for one class settles a unit, so the other classes
        # need not be scored: the decision is the one every class scored gives.
        self.class_by_class = len(self.class_index) > 1 and not self.settings.complete_tests
        # Units each class settled, overall and per group: the likeliest classes go first.
        self.settled_by = np.zeros(len(self.class_index))
        self.settled_in_group: dict[int, np.ndarray] = {}

    def _class_index(self, class_members: dict[int, np.ndarray]) -> list[np.ndarray]:
        """Samples per class; classes too small for the test are an error or dropped."""
        needed = minimum_samples(self.settings.test, self.settings.alpha)
        index, small = [], []
        for label, members in class_members.items():
            if len(members) >= needed:
                index.append(members)
            else:
                small.append(f"{label} ({len(members)})")
        if small and self.settings.small_classes != "exclude":
            raise BadInputError(
                f"classes {', '.join(small)} have fewer than the {needed} calibration samples "
                f"a one-sided {self.settings.test} test needs to reach alpha="
                f"{self.settings.alpha:g}; add samples or pass --small-classes exclude"
            )
        if small:
            warnings.warn(f"classes excluded from the tests: {', '.join(small)}", stacklevel=3)
        if not index:
            raise BadInputError("no class has enough calibration samples for the test")
        return index

    def test(
        self,
        keep: dict[int, np.ndarray],
        baseline: np.ndarray,
        group: int,
        unit: int,
        alpha: float,
        margin: float | None = None,
        lazy: bool = False,
    ) -> tuple[UnitDecision, np.ndarray | None]:
        """Ablate ``unit`` on the model ``keep`` describes and classify it.

        With ``lazy`` (for callers that need the scores only of a unit they remove), a
        unit Critical for one class is returned with no scores, the classes after that
        one unscored.
        """
        margin = self.settings.margin if margin is None else margin
        trial = {g: mask.copy() for g, mask in keep.items()}
        trial[group][unit] = False
        reference = self.original if self.settings.reference == "original" else baseline
        if lazy and self.class_by_class:
            return self._test_class_by_class(trial, reference, baseline, group, unit, alpha, margin)
        after = self.evaluator.scores(trial, varying=group)
        p_lower, p_higher = self._pvalues(after, reference, margin)
        category = categorize(p_lower, p_higher, alpha)
        return self._decision(group, unit, after, baseline, p_lower, p_higher, category), after

    def _test_class_by_class(
        self,
        trial: dict[int, np.ndarray],
        reference: np.ndarray,
        baseline: np.ndarray,
        group: int,
        unit: int,
        alpha: float,
        margin: float,
    ) -> tuple[UnitDecision, np.ndarray | None]:
        """Score one class at a time and stop at the first class the unit is Critical
        for: the plain test would say Critical too, whatever the other classes show.
        The classes that settled most units of this group so far go first (then those
        that settled most overall). A unit Critical for no class has every sample
        scored, and the plain test decides."""
        classes = len(self.class_index)
        # Holm's smallest adjusted p-value is K·p: one class below α/K settles it.
        scale = classes if self.settings.correction == "holm" else 1
        after = np.full(len(self.original), np.nan)
        scored = np.zeros(len(self.original), dtype=bool)
        p_lower, p_higher = np.full(classes, np.nan), np.full(classes, np.nan)
        in_group = self.settled_in_group.setdefault(group, np.zeros(classes))
        for k in np.lexsort((-self.settled_by, -in_group)):
            members = self.class_index[k]
            todo = members[~scored[members]]
            if len(todo):
                after[todo] = self.evaluator.scores(
                    trial, varying=group, samples=todo, continued=bool(scored.any())
                )
                scored[todo] = True
            p_lower[k], p_higher[k] = paired_pvalues(
                after[members], reference[members], self.settings.test, margin
            )
            if p_lower[k] * scale < alpha:
                self.settled_by[k] += 1
                in_group[k] += 1
                seen = np.flatnonzero(scored)
                decision = self._decision(
                    group, unit, after[seen], baseline[seen], p_lower, p_higher, CRITICAL
                )
                return decision, None
        rest = np.flatnonzero(~scored)  # samples in no tested class still count in ξ
        if len(rest):
            after[rest] = self.evaluator.scores(
                trial, varying=group, samples=rest, continued=bool(scored.any())
            )
        p_lower, p_higher = self._corrected(p_lower, p_higher)
        category = categorize(p_lower, p_higher, alpha)
        return self._decision(group, unit, after, baseline, p_lower, p_higher, category), after

    def _pvalues(
        self, after: np.ndarray, reference: np.ndarray, margin: float
    ) -> tuple[np.ndarray, np.ndarray]:
        p_values = class_pvalues(after, reference, self.class_index, self.settings.test, margin)
        return self._corrected(*p_values)

    def _corrected(
        self, p_lower: np.ndarray, p_higher: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.settings.correction == "holm":
            return holm(p_lower), holm(p_higher)
        return p_lower, p_higher

    @staticmethod
    def _decision(
        group: int,
        unit: int,
        after: np.ndarray,
        baseline: np.ndarray,
        p_lower: np.ndarray,
        p_higher: np.ndarray,
        category: str,
    ) -> UnitDecision:
        return UnitDecision(
            group,
            unit,
            xi=causal_effect(after, baseline),
            p_lower=_rounded(p_lower),
            p_higher=_rounded(p_higher),
            category=category,
        )


def class_pvalues(
    after: np.ndarray, reference: np.ndarray, classes: list[np.ndarray], test: str, margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per class, the one-sided p-values that σ fell and that it rose (uncorrected)."""
    pairs = [paired_pvalues(after[i], reference[i], test, margin) for i in classes]
    p_lower, p_higher = (np.array(p) for p in zip(*pairs))
    return p_lower, p_higher


def _rounded(pvalues: np.ndarray) -> list[float | None]:
    """For the report; None for a class not scored (the unit was settled before it)."""
    return [None if np.isnan(p) else round(float(p), 8) for p in pvalues]


def cswap(context: PruneContext) -> Selection:
    scheme = context.settings.scheme
    if scheme == "ranked":
        return _ranked(context)
    if scheme == "greedy":
        return _greedy(context)
    return _progressive(context)


def _budget(context: PruneContext) -> ParamBudget:
    budget = ParamBudget(context.analysis)
    budget.watch(context.checkpoints)
    return budget


def _visit_order(context: PruneContext) -> list[tuple[int, list[int]]]:
    """Groups in layer order, each with its units in ascending magnitude (or at random)."""
    magnitudes = magnitude_scores(context.analysis, 2)
    order = []
    for group_id in context.prunable_groups():
        size = context.analysis.groups[group_id].size
        if context.settings.order == "random":
            units = context.rng.permutation(size).tolist()
        else:
            units = np.argsort(magnitudes[group_id], kind="stable").tolist()
        order.append((group_id, units))
    return order


def _progressive(context: PruneContext) -> Selection:
    tester = UnitTester(context)
    budget = _budget(context)
    settings = context.settings
    baseline = tester.original  # the unpruned model's scores
    decisions: list[UnitDecision] = []
    notes: list[str] = []
    baseline = _progressive_pass(
        context, tester, budget, baseline, settings.alpha, settings.margin, decisions
    )
    if settings.ratio is None:
        return Selection(budget.snapshot(), decisions, notes, budget.snapshots)
    relaxations = [(settings.alpha / d, settings.margin) for d in ALPHA_DIVISORS]
    relaxations += [(settings.alpha, m) for m in MARGIN_SCHEDULE if m > settings.margin]
    for alpha, margin in relaxations:
        if budget.reached(settings.ratio):
            break
        notes.append(f"pass with alpha={alpha:g}, margin={margin:g} towards ratio {settings.ratio}")
        baseline = _progressive_pass(context, tester, budget, baseline, alpha, margin, decisions)
    if not budget.reached(settings.ratio):
        notes.append("removing the least harmful remaining units (largest ξ) to reach the ratio")
        _remove_by_harm(context, tester, budget, baseline, decisions)
    return Selection(budget.snapshot(), decisions, notes, budget.snapshots)


def _progressive_pass(
    context: PruneContext,
    tester: UnitTester,
    budget: ParamBudget,
    baseline: np.ndarray,
    alpha: float,
    margin: float,
    decisions: list[UnitDecision],
) -> np.ndarray:
    ratio = context.settings.ratio
    order = _visit_order(context)
    total, done = sum(len(units) for _, units in order), 0
    for group_id, units in order:
        for unit in units:
            done += 1
            context.report_progress(f"C-SWAP alpha={alpha:g}", done, total)
            if ratio is not None and budget.reached(ratio):
                return baseline
            if not budget.can_remove(group_id, unit):
                continue
            decision, after = tester.test(
                budget.keep, baseline, group_id, unit, alpha, margin, lazy=True
            )
            if decision.category != CRITICAL:
                budget.remove(group_id, unit)
                decision.removed = True
                baseline = after  # the model as now pruned
            decisions.append(decision)
    return baseline


def _remove_by_harm(
    context: PruneContext,
    tester: UnitTester,
    budget: ParamBudget,
    baseline: np.ndarray,
    decisions: list[UnitDecision],
) -> None:
    ranked = []
    for group_id, units in _visit_order(context):
        for unit in units:
            if budget.can_remove(group_id, unit):
                decision, _ = tester.test(budget.keep, baseline, group_id, unit, 0.0)
                ranked.append((-decision.xi, group_id, unit, decision))
    ranked.sort(key=lambda item: item[:3])
    for _, group_id, unit, decision in ranked:
        if budget.reached(context.settings.ratio):
            break
        if budget.can_remove(group_id, unit):
            budget.remove(group_id, unit)
            decision.removed = True
            decisions.append(decision)


def _ranked(context: PruneContext) -> Selection:
    """Every unit tested once on the unpruned model; N and D units removed together."""
    tester = UnitTester(context)
    budget = _budget(context)
    baseline = tester.original  # the unpruned model's scores
    full = budget.snapshot()
    tested = [
        tester.test(full, baseline, group_id, unit, context.settings.alpha)[0]
        for group_id, units in _visit_order(context)
        for unit in units
    ]
    tested.sort(key=lambda d: (d.category == CRITICAL, -d.xi))
    ratio = context.settings.ratio
    for decision in tested:
        if ratio is not None and budget.reached(ratio):
            break
        removable = ratio is not None or decision.category != CRITICAL
        if removable and budget.can_remove(decision.group, decision.unit):
            budget.remove(decision.group, decision.unit)
            decision.removed = True
    return Selection(budget.snapshot(), tested, snapshots=budget.snapshots)


def _greedy(context: PruneContext) -> Selection:
    """Before each removal, re-test every remaining unit; remove the most helpful."""
    tester = UnitTester(context)
    budget = _budget(context)
    baseline = tester.original  # the unpruned model's scores
    ratio = context.settings.ratio
    decisions: list[UnitDecision] = []
    while ratio is None or not budget.reached(ratio):
        best = None
        for group_id, units in _visit_order(context):
            for unit in units:
                if budget.can_remove(group_id, unit):
                    decision, after = tester.test(
                        budget.keep, baseline, group_id, unit, context.settings.alpha
                    )
                    removable = ratio is not None or decision.category != CRITICAL
                    if removable and (best is None or decision.xi > best[0].xi):
                        best = (decision, after)
        if best is None:
            break
        decision, baseline = best
        budget.remove(decision.group, decision.unit)
        decision.removed = True
        decisions.append(decision)
    return Selection(budget.snapshot(), decisions, snapshots=budget.snapshots)
