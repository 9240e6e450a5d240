"""Recursive least squares with one inverse-correlation matrix P shared by all rows of the weights.

PINning (Rajan, Harvey & Tank 2016) trains the columns J[:, C] so that every unit's total input z_i
follows its target f_i. Every row regresses on the same plastic rates r_C, so the per-row RLS matrices
are all equal: one M x M matrix P serves the N rows exactly, at O(M² + N M) per update instead of
O(N M²). After updates with inputs r_1..r_K and targets f_1..f_K, starting from W0 and P(0) = P0 I,
the weights are the ridge solution W = (W0 / P0 + Σ f_k r_kᵀ)(I / P0 + Σ r_k r_kᵀ)⁻¹ and
P = (I / P0 + Σ r_k r_kᵀ)⁻¹ (tests/models/test_pinning_rls.py checks both).

Legend: N rows (units), M regressors (plastic units).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg.blas import get_blas_funcs


def _subtract_outer(matrix: np.ndarray, scale: float, left: np.ndarray, right: np.ndarray) -> None:
    """matrix -= scale * left rightᵀ in place with BLAS ger: no N x M temporary, no copy of the block."""
    ger = get_blas_funcs("ger", (matrix,))
    updated = ger(
        -scale,
        left.astype(matrix.dtype, copy=False),
        right.astype(matrix.dtype, copy=False),
        a=matrix,
        overwrite_a=True,
    )
    if updated is not matrix:  # ger copied: the caller's array did not change
        raise ValueError(
            f"RLS needs Fortran-ordered (column-major) float arrays to update in place, got dtype {matrix.dtype} "
            f"with flags F={matrix.flags.f_contiguous}; pass np.asfortranarray(...)"
        )


def rls_update(weights: np.ndarray, inverse_correlation: np.ndarray, inputs: np.ndarray, error: np.ndarray) -> None:
    """One RLS step, in place: q = P r; c = 1 / (1 + rᵀ q); P -= c q qᵀ; W -= c e qᵀ.

    weights (N, M) and inverse_correlation (M, M) must be Fortran-ordered (the plastic columns of a
    column-major J are one contiguous block); inputs r (M,) are the regressors; error e (N,) is
    W r + (everything else) - target, measured before this update.
    """
    gain = inverse_correlation @ inputs.astype(inverse_correlation.dtype, copy=False)  # q (M,)
    scale = 1.0 / (1.0 + float(inputs @ gain))  # c
    _subtract_outer(inverse_correlation, scale, gain, gain)
    _subtract_outer(weights, scale, error, gain)
