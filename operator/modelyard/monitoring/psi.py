"""Population stability index over binned counts, the one drift score servers and operator use."""

from __future__ import annotations

import math
from collections.abc import Sequence

# Empty bins would make PSI infinite; both distributions' shares are floored at this.
EPSILON = 1e-4


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Sum over bins of (a - e) * ln(a / e), with both shares floored at EPSILON."""
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, EPSILON), max(a, EPSILON)
        total += (a - e) * math.log(a / e)
    return total


def shares(counts: Sequence[int]) -> list[float]:
    """Share of values per bin; all zeros when there are none."""
    total = sum(counts)
    return [c / total for c in counts] if total else [0.0] * len(counts)
