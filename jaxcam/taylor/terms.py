"""Series coefficients ("terms") and their algebra, with zeros and basis directions symbolic.

A series is the list of normalised coefficients (c_1, ..., c_K) of a value
x(t) = c_0 + c_1 t + ... + c_K t^K (c_0 is the primal, kept apart); D^k = k! c_k.
A coefficient ("term") is an array, None (exactly zero) or a :class:`BasisDirection`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, overload

import jax
import jax.numpy as jnp

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class BasisDirection:
    """``scale * e_index`` in an array of ``shape``: a basis direction kept symbolic.

    ``index`` is the row-major flat index (int scalar), ``scale`` a scalar.
    """

    index: Array
    scale: Array
    shape: tuple[int, ...]

    def coords(self) -> tuple[Array, ...]:
        return tuple(jnp.unravel_index(self.index, self.shape)) if self.shape else ()

    def dense(self) -> Array:
        size = math.prod(self.shape)
        hot = jnp.arange(size, dtype=jnp.asarray(self.index).dtype) == self.index
        return jnp.where(hot, self.scale, jnp.zeros((), self.scale.dtype)).reshape(self.shape)

    def moved(self, coords: Sequence[Array], shape: Sequence[int]) -> BasisDirection:
        """The same scale at ``coords`` of an array of ``shape``."""
        index = jnp.zeros((), jnp.asarray(self.index).dtype)
        for coord, size in zip(coords, shape, strict=True):
            index = index * size + coord
        return BasisDirection(index, self.scale, tuple(shape))

    def times(self, factor: Any) -> BasisDirection:
        """``self * factor`` for ``factor`` broadcastable to ``self.shape``."""
        return BasisDirection(self.index, self.scale * at_basis(factor, self), self.shape)

    def summed(self, axes: Sequence[int]) -> BasisDirection:
        """``reduce_sum`` over ``axes``."""
        kept = [i for i in range(len(self.shape)) if i not in set(axes)]
        coords = self.coords()
        return self.moved([coords[i] for i in kept], [self.shape[i] for i in kept])

    def transposed(self, permutation: Sequence[int]) -> BasisDirection:
        coords = self.coords()
        return self.moved([coords[p] for p in permutation], [self.shape[p] for p in permutation])


Term = Array | BasisDirection | None
Series = list[Term] | None  # None: every coefficient is zero
RuleResult = tuple[list[Any], Sequence[Series]]  # (outputs, their series)


def at_basis(values: Any, basis: BasisDirection) -> Array:
    """``values`` (broadcastable to ``basis.shape``) at the basis vector's position."""
    values = jnp.asarray(values)
    if values.ndim == 0:
        return values
    coords = basis.coords()[len(basis.shape) - values.ndim :]
    return values[
        tuple(0 if size == 1 else c for size, c in zip(values.shape, coords, strict=True))
    ]


@overload
def dense_term(term: Array | BasisDirection) -> Array: ...
@overload
def dense_term(term: None) -> None: ...
@overload
def dense_term(term: Term) -> Array | None: ...
def dense_term(term: Term) -> Array | None:
    """``term`` as an array (a basis direction made dense); None stays None."""
    return term.dense() if isinstance(term, BasisDirection) else term


def add_terms(a: Term, b: Term) -> Term:
    """``a + b``, None (zero) kept symbolic."""
    if a is None:
        return b
    if b is None:
        return a
    return dense_term(a) + dense_term(b)


def sum_terms(terms: Sequence[Term]) -> Term:
    """The sum of ``terms``; None when they are all zero."""
    out: Term = None
    for term in terms:
        out = add_terms(out, term)
    return out


@overload
def scaled_term(term: Array | BasisDirection, factor: Any) -> Array | BasisDirection: ...
@overload
def scaled_term(term: None, factor: Any) -> None: ...
@overload
def scaled_term(term: Term, factor: Any) -> Term: ...
def scaled_term(term: Term, factor: Any) -> Term:
    """``term * factor``; a basis direction stays one (its scale times ``factor``)."""
    if term is None:
        return None
    if isinstance(term, BasisDirection):
        return BasisDirection(term.index, term.scale * factor, term.shape)
    return term * factor


def product_coefficient(u: list[Any], v: list[Any], k: int, op: Callable[[Any, Any], Term]) -> Term:
    """Coefficient k of the product of two full series ``[c_0, ..., c_K]``."""
    return sum_terms(
        [op(u[i], v[k - i]) for i in range(k + 1) if u[i] is not None and v[k - i] is not None]
    )


def dense_series(primal: Any, series: Series, order: int) -> list[Any]:
    """``[c_0, c_1, ..., c_K]`` with basis terms made dense (zeros stay None)."""
    terms = series or [None] * order
    return [primal, *(dense_term(t) for t in terms)]
