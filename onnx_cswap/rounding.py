"""Hardware-friendly channel counts: keep a multiple of N units per group where possible.

Rounding only ever restores units: the ones a criterion removed last (the least
clear-cut removals) come back first, until each group keeps a multiple of N units or
all of them.
"""

from __future__ import annotations

import numpy as np

from onnx_cswap.criteria.base import Selection


def round_up_keep(selection: Selection, multiple: int) -> Selection:
    """A copy of ``selection`` whose groups keep a multiple of ``multiple`` units."""
    if multiple <= 1:
        return selection
    keep = {group_id: mask.copy() for group_id, mask in selection.keep.items()}
    removal_order = [d for d in selection.decisions if d.removed]
    restored = 0
    for group_id, mask in keep.items():
        target = min(len(mask), -(-int(mask.sum()) // multiple) * multiple)
        removed_here = [d.unit for d in removal_order if d.group == group_id and not mask[d.unit]]
        # Units the criterion removed without recording a decision come after, by index.
        missing = [u for u in np.flatnonzero(~mask) if u not in removed_here]
        for unit in [*reversed(removed_here), *missing]:
            if mask.sum() >= target:
                break
            mask[unit] = True
            restored += 1
    notes = [
        *selection.notes,
        f"rounded kept channels up to multiples of {multiple}: {restored} units restored",
    ]
    return Selection(keep, selection.decisions, notes, selection.snapshots)
