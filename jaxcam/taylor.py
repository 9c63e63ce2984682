"""Taylor mode: truncated power series pushed through a traced function (a jaxpr).

:func:`taylor_derivatives` gives ``D^m f(x)[v, ..., v]`` for m = 0..order in one pass
(the coefficients of ``f(x + t v)`` are ``D^m f[v, ..., v] / m!``), the work
:mod:`jaxcam.derivatives` does along every basis direction of A. Zero coefficients
stay symbolic (``None``) and a basis direction stays symbolic (:class:`BasisDirection`:
index and scale) through reshapes, transposes, sums, scalings and a first dense layer
(a row gather). Primitives without a series rule here - ``jax.custom_jvp`` functions
included - are differentiated with their own JVP rules (nested ``jax.jvp`` along the
series), so results stay exact; :func:`taylor_rule` attaches a series rule of one's own
(the stable softmax score's log-sum-exp: :func:`logsumexp_taylor`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend.core import ClosedJaxpr, DropVar, Jaxpr, JaxprEqn, Literal

Array = jax.Array
ScalarFn = Callable[[Array], Array]


def check_order(order: int) -> None:
    if not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be an int >= 1, got {order!r}")


# --------------------------------------------------------------------------------------
# Taylor mode.
#
# A series is the list of normalised coefficients (c_1, ..., c_K) of a value
# x(t) = c_0 + c_1 t + ... + c_K t^K (c_0 is the primal, kept apart); D^k = k! c_k.
# A coefficient ("term") is an array, None (exactly zero) or a BasisDirection.


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
        return BasisDirection(self.index, self.scale * _at(factor, self), self.shape)

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
RuleResult = tuple[list[Any], list[Series]]  # (outputs, their series)


def _at(values: Any, basis: BasisDirection) -> Array:
    """``values`` (broadcastable to ``basis.shape``) at the basis vector's position."""
    values = jnp.asarray(values)
    if values.ndim == 0:
        return values
    coords = basis.coords()[len(basis.shape) - values.ndim :]
    return values[
        tuple(0 if size == 1 else c for size, c in zip(values.shape, coords, strict=True))
    ]


def _dense(term: Term) -> Array | None:
    return term.dense() if isinstance(term, BasisDirection) else term


def _add(a: Term, b: Term) -> Term:
    if a is None:
        return b
    if b is None:
        return a
    return _dense(a) + _dense(b)


def _total(terms: Sequence[Term]) -> Term:
    out: Term = None
    for term in terms:
        out = _add(out, term)
    return out


def _scaled(term: Term, factor: Any) -> Term:
    if term is None:
        return None
    if isinstance(term, BasisDirection):
        return BasisDirection(term.index, term.scale * factor, term.shape)
    return term * factor


def _bind(eqn: JaxprEqn, args: Sequence[Any]) -> list[Any]:
    """Apply ``eqn``'s primitive to ``args`` (as ``jax.core.eval_jaxpr`` does)."""
    params = eqn.primitive.get_bind_params(eqn.params)
    if isinstance(params, tuple):  # older jax: (subfuns, params)
        subfuns, params = params
        args = (*subfuns, *args)
    out = eqn.primitive.bind(*args, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _inexact(aval: Any) -> bool:
    return jnp.issubdtype(aval.dtype, jnp.inexact)


def _zeros(aval: Any) -> Array:
    return jnp.zeros(aval.shape, aval.dtype)


def _product(u: list[Any], v: list[Any], k: int, op: Callable[[Any, Any], Term]) -> Term:
    """Coefficient k of the product of two full series ``[c_0, ..., c_K]``."""
    return _total(
        [op(u[i], v[k - i]) for i in range(k + 1) if u[i] is not None and v[k - i] is not None]
    )


def _dense_series(primal: Any, series: Series, order: int) -> list[Any]:
    """``[c_0, c_1, ..., c_K]`` with basis terms made dense (zeros stay None)."""
    terms = series or [None] * order
    return [primal, *(_dense(t) for t in terms)]


# Primitives linear in the listed operands (the others are indices or predicates).
_LINEAR: dict[str, tuple[int, ...]] = {
    **dict.fromkeys(
        (
            "neg",
            "reshape",
            "squeeze",
            "expand_dims",
            "broadcast_in_dim",
            "reduce_sum",
            "transpose",
            "convert_element_type",
            "copy",
            "rev",
            "slice",
            "cumsum",
            "reduce_window_sum",
            "real",
            "imag",
            "conj",
            "reduce_precision",
            "dynamic_slice",
            "gather",
            "split",
            "device_put",
        ),
        (0,),
    ),
    "add": (0, 1),
    "sub": (0, 1),
    "add_any": (0, 1),
    "pad": (0, 1),
    "dynamic_update_slice": (0, 1),
    "scatter_add": (0, 2),
    "select_n": (),  # every operand after the predicate; filled in by _linear_positions
    "concatenate": (),  # every operand
}
# Primitives with zero derivative (piecewise constant) and float outputs.
_CONSTANT = {"sign", "floor", "ceil", "round", "stop_gradient", "nextafter"}
# Primitives that call a sub-jaxpr without a differentiation rule of their own.
_CALLS = {
    "pjit",
    "jit",
    "closed_call",
    "core_call",
    "checkpoint",
    "remat",
    "remat2",
    "custom_vjp_call",
    "custom_vjp_call_jaxpr",
}


def _linear_positions(eqn: JaxprEqn) -> tuple[int, ...]:
    name = eqn.primitive.name
    if name == "select_n":
        return tuple(range(1, len(eqn.invars)))
    if name == "concatenate":
        return tuple(range(len(eqn.invars)))
    return _LINEAR[name]


def _basis_linear(eqn: JaxprEqn, basis: BasisDirection) -> BasisDirection | None:
    """A unary linear primitive applied to a basis vector, if it stays one."""
    name, params = eqn.primitive.name, eqn.params
    out_shape = tuple(eqn.outvars[0].aval.shape)
    if name in ("reshape", "squeeze", "expand_dims", "copy"):
        if name == "reshape" and params.get("dimensions") is not None:
            return None
        return BasisDirection(basis.index, basis.scale, out_shape)
    if name == "broadcast_in_dim":
        dims = tuple(params["broadcast_dimensions"])
        if math.prod(out_shape) != math.prod(basis.shape) or dims != tuple(sorted(dims)):
            return None
        return BasisDirection(basis.index, basis.scale, out_shape)
    if name == "neg":
        return BasisDirection(basis.index, -basis.scale, basis.shape)
    if name == "convert_element_type":
        return BasisDirection(basis.index, basis.scale.astype(params["new_dtype"]), basis.shape)
    if name == "reduce_sum":
        return basis.summed(params["axes"])
    if name == "transpose":
        return basis.transposed(params["permutation"])
    return None


def _linear_rule(eqn: JaxprEqn, primals: list[Any], series: list[Series], order: int) -> RuleResult:
    positions = _linear_positions(eqn)
    outs = _bind(eqn, primals)
    out_terms: list[list[Term]] = [[] for _ in outs]
    out_avals = [v.aval for v in eqn.outvars]
    name = eqn.primitive.name
    for k in range(order):
        terms = [series[i][k] if series[i] is not None else None for i in positions]
        live = [t for t in terms if t is not None]
        if not live:
            values: list[Term] = [None] * len(outs)
        elif (
            len(positions) == 1
            and isinstance(live[0], BasisDirection)
            and (moved := _basis_linear(eqn, live[0]))
        ):
            values = [moved]
        elif name in ("add", "sub", "add_any") and len(live) == 1:
            term = (
                terms[0] if terms[0] is not None else _scaled(terms[1], -1 if name == "sub" else 1)
            )
            shape = tuple(out_avals[0].shape)
            if isinstance(term, BasisDirection) and term.shape != shape:
                term = term.dense()
            if not isinstance(term, BasisDirection) and term.shape != shape:
                term = jnp.broadcast_to(term, shape)
            values = [term]
        else:
            args = list(primals)
            for i, term in zip(positions, terms, strict=True):
                args[i] = _dense(term) if term is not None else _zeros(eqn.invars[i].aval)
            values = list(_bind(eqn, args))
        for out, value in zip(out_terms, values, strict=True):
            out.append(value)
    return outs, out_terms


def _elementwise_product(eqn: JaxprEqn) -> Callable[[Any, Any], Term]:
    shape = tuple(eqn.outvars[0].aval.shape)

    def op(a: Any, b: Any) -> Term:
        for basis, other in ((a, b), (b, a)):
            if isinstance(basis, BasisDirection) and not isinstance(other, BasisDirection):
                if basis.shape == shape:
                    return basis.times(other)
        return _bind(eqn, [_dense(a), _dense(b)])[0]

    return op


def _dot_product(eqn: JaxprEqn) -> Callable[[Any, Any], Term]:
    """``dot_general`` of two terms; a basis vector picks a slice of the other operand."""
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = eqn.params["dimension_numbers"]
    out_aval = eqn.outvars[0].aval

    def picked(
        basis: BasisDirection, other: Any, own: Sequence[int], others: Sequence[int]
    ) -> Term:
        free = [d for d in range(len(basis.shape)) if d not in own]
        if lhs_batch or rhs_batch or math.prod(basis.shape[d] for d in free) != 1:
            return None
        coords = basis.coords()
        value = jnp.asarray(other)
        for mine, theirs in sorted(zip(own, others, strict=True), key=lambda p: -p[1]):
            value = lax.dynamic_index_in_dim(value, coords[mine], axis=theirs, keepdims=False)
        return (basis.scale * value).reshape(out_aval.shape).astype(out_aval.dtype)

    def op(a: Any, b: Any) -> Term:
        if isinstance(a, BasisDirection) and not isinstance(b, BasisDirection):
            if (value := picked(a, b, lhs_contract, rhs_contract)) is not None:
                return value
        if isinstance(b, BasisDirection) and not isinstance(a, BasisDirection):
            if (value := picked(b, a, rhs_contract, lhs_contract)) is not None:
                return value
        return _bind(eqn, [_dense(a), _dense(b)])[0]

    return op


def _bilinear_rule(
    eqn: JaxprEqn, primals: list[Any], series: list[Series], order: int
) -> RuleResult:
    op = _dot_product(eqn) if eqn.primitive.name == "dot_general" else _elementwise_product(eqn)
    u = [primals[0], *(series[0] or [None] * order)]
    v = [primals[1], *(series[1] or [None] * order)]
    out = _bind(eqn, primals)
    return out, [[_product(u, v, k, op) for k in range(1, order + 1)]]


def _div_rule(eqn: JaxprEqn, primals: list[Any], series: list[Series], order: int) -> RuleResult:
    (out,) = _bind(eqn, primals)
    divisor = primals[1]
    if series[1] is None:  # linear in the numerator
        terms = []
        for term in series[0]:
            if isinstance(term, BasisDirection) and term.shape == tuple(eqn.outvars[0].aval.shape):
                terms.append(
                    BasisDirection(term.index, term.scale / _at(divisor, term), term.shape)
                )
            else:
                terms.append(None if term is None else _dense(term) / divisor)
        return [out], [terms]
    u = _dense_series(primals[0], series[0], order)
    w = _dense_series(divisor, series[1], order)
    y: list[Any] = [out]
    for k in range(1, order + 1):
        rest = _total(
            [w[j] * y[k - j] for j in range(1, k + 1) if w[j] is not None and y[k - j] is not None]
        )
        numerator = _add(u[k], _scaled(rest, -1))
        y.append(None if numerator is None else numerator / divisor)
    return [out], [y[1:]]


def _by_derivative(u: list[Any], y0: Array, slope: Callable[[list[Any], int], Any], order: int):
    """``y = f(u)`` from ``f'(u) = phi``: ``y_k = (1/k) sum_j j u_j phi_{k-j}``.

    ``slope(y, m)`` returns coefficient m of phi given ``y[0..m]``.
    """
    y: list[Any] = [y0]
    phi: list[Any] = []
    for k in range(1, order + 1):
        phi.append(slope(y, k - 1))
        parts = [
            (j / k) * (u[j] * phi[k - j])
            for j in range(1, k + 1)
            if u[j] is not None and phi[k - j] is not None
        ]
        y.append(_total(parts))
    return y[1:]


def _square_coefficient(y: list[Any], m: int) -> Any:
    return _total(
        [y[i] * y[m - i] for i in range(m + 1) if y[i] is not None and y[m - i] is not None]
    )


def _power_series(u: list[Any], y0: Array, power: Any, order: int) -> list[Any]:
    """``y = u^p`` (u_0 != 0): ``y_k = sum_j ((p + 1) j - k) u_j y_{k-j} / (k u_0)``."""
    y: list[Any] = [y0]
    for k in range(1, order + 1):
        parts = [
            ((power + 1) * j - k) * (u[j] * y[k - j])
            for j in range(1, k + 1)
            if u[j] is not None and y[k - j] is not None
        ]
        total = _total(parts)
        y.append(None if total is None else total / (k * u[0]))
    return y[1:]


def _log_series(u: list[Any], base: Any, order: int) -> list[Term]:
    """Coefficients 1..order of ``log(u(t))`` for a series u with ``u_0 = base``.

    From ``u' = u y'``: ``y_k = (u_k - sum_{j<k} (j/k) y_j u_{k-j}) / u_0``.
    """
    y: list[Any] = [None]
    for k in range(1, order + 1):
        rest = _total(
            [
                (j / k) * (y[j] * u[k - j])
                for j in range(1, k)
                if y[j] is not None and u[k - j] is not None
            ]
        )
        numerator = _add(u[k], _scaled(rest, -1))
        y.append(None if numerator is None else numerator / base)
    return y[1:]


def _exp_series(u: list[Any], y0: Array, order: int) -> list[Any]:
    return _by_derivative(u, y0, lambda y, m: y[m], order)


_UNARY = {
    "exp",
    "expm1",
    "log",
    "log1p",
    "tanh",
    "logistic",
    "erf",
    "erfc",
    "sqrt",
    "rsqrt",
    "cbrt",
    "integer_pow",
    "square",
    "abs",
}


def _unary_rule(eqn: JaxprEqn, primals: list[Any], series: list[Series], order: int) -> RuleResult:
    """Rules for the elementwise functions of one operand in ``_UNARY``."""
    name = eqn.primitive.name
    (y0,) = _bind(eqn, primals)
    u = _dense_series(primals[0], series[0], order)
    if name == "exp":
        return [y0], [_exp_series(u, y0, order)]
    if name == "expm1":
        return [y0], [_exp_series(u, jnp.exp(u[0]), order)]
    if name in ("log", "log1p"):
        return [y0], [_log_series(u, u[0] if name == "log" else 1 + u[0], order)]
    if name == "tanh":
        return [y0], [
            _by_derivative(
                u,
                y0,
                lambda y, m: _add(1 if m == 0 else None, _scaled(_square_coefficient(y, m), -1)),
                order,
            )
        ]
    if name == "logistic":
        return [y0], [
            _by_derivative(
                u, y0, lambda y, m: _add(y[m], _scaled(_square_coefficient(y, m), -1)), order
            )
        ]
    if name in ("erf", "erfc"):
        minus_square = [-(u[0] * u[0])] + [
            _scaled(_product(u, u, k, jnp.multiply), -1) for k in range(1, order)
        ]
        gauss = [
            jnp.exp(minus_square[0]),
            *_exp_series(minus_square, jnp.exp(minus_square[0]), order - 1),
        ]
        factor = (2.0 if name == "erf" else -2.0) / math.sqrt(math.pi)
        return [y0], [_by_derivative(u, y0, lambda y, m: _scaled(gauss[m], factor), order)]
    if name in ("sqrt", "rsqrt", "cbrt"):
        power = {"sqrt": 0.5, "rsqrt": -0.5, "cbrt": 1.0 / 3.0}[name]
        return [y0], [_power_series(u, y0, power, order)]
    if name in ("integer_pow", "square"):
        n = eqn.params["y"] if name == "integer_pow" else 2
        if n == 0:
            return [y0], [None]
        if n < 0:
            return [y0], [_power_series(u, y0, float(n), order)]
        power = u
        for _ in range(n - 1):
            power = [
                power[0] * u[0],
                *(_product(power, u, k, jnp.multiply) for k in range(1, order + 1)),
            ]
        return [y0], [power[1:]]
    sign = jnp.sign(u[0])  # abs
    return [y0], [[None if t is None else sign * t for t in u[1:]]]


def _choice_rule(eqn: JaxprEqn, primals: list[Any], series: list[Series], order: int) -> RuleResult:
    """``max``/``min``: the chosen operand's series; ties get the mean (as jax.jvp)."""
    (out,) = _bind(eqn, primals)
    a = _dense_series(primals[0], series[0], order)
    b = _dense_series(primals[1], series[1], order)
    shape, dtype = eqn.outvars[0].aval.shape, eqn.outvars[0].aval.dtype
    first = a[0] > b[0] if eqn.primitive.name == "max" else a[0] < b[0]
    tie = a[0] == b[0]
    terms = []
    for k in range(1, order + 1):
        if a[k] is None and b[k] is None:
            terms.append(None)
            continue
        x = jnp.broadcast_to(a[k] if a[k] is not None else jnp.zeros((), dtype), shape)
        z = jnp.broadcast_to(b[k] if b[k] is not None else jnp.zeros((), dtype), shape)
        terms.append(jnp.where(tie, (x + z) / 2, jnp.where(first, x, z)))
    return [out], [terms]


def _reduce_choice_rule(
    eqn: JaxprEqn, primals: list[Any], series: list[Series], order: int
) -> RuleResult:
    """``reduce_max``/``reduce_min``: the mean series over the chosen elements (as jax.jvp)."""
    (out,) = _bind(eqn, primals)
    axes = tuple(eqn.params["axes"])
    operand = primals[0]
    chosen = (operand == jnp.expand_dims(out, axes)).astype(out.dtype)
    counts = jnp.sum(chosen, axis=axes)
    terms: list[Term] = []
    for term in series[0]:
        if term is None:
            terms.append(None)
        elif isinstance(term, BasisDirection) and term.shape == tuple(operand.shape):
            summed = term.times(chosen).summed(axes)
            terms.append(
                BasisDirection(summed.index, summed.scale / _at(counts, summed), summed.shape)
            )
        else:
            terms.append(jnp.sum(_dense(term) * chosen, axis=axes) / counts)
    return [out], [terms]


def _call_jaxpr(eqn: JaxprEqn) -> ClosedJaxpr | None:
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        sub = eqn.params.get(key)
        if isinstance(sub, ClosedJaxpr):
            return sub
        if isinstance(sub, Jaxpr):
            return ClosedJaxpr(sub, ())
    return None


def _jvp_rule(eqn: JaxprEqn, primals: list[Any], series: list[Series], order: int) -> RuleResult:
    """Any primitive (custom JVP rules included) by nested ``jax.jvp`` along the series.

    With ``s_j = D^j x(0)`` per operand, the derivatives of ``P(x(t))`` follow from
    the shift ``s_j -> s_{j+1}``: order k is one ``jax.jvp`` of orders 0..k-1 with
    respect to ``(s_0, ..., s_{k-1})`` along ``(s_1, ..., s_k)``.
    """
    active = [i for i, s in enumerate(series) if s is not None]
    jets = [
        [
            primals[i],
            *(
                None if t is None else _dense(t) * math.factorial(j)
                for j, t in enumerate(series[i], 1)
            ),
        ]
        for i in active
    ]

    def at_order(k: int) -> Callable[[list[list[Any]]], list[list[Any]]]:
        if k == 0:

            def evaluate(args: list[list[Any]]) -> list[list[Any]]:
                full = list(primals)
                for i, jet in zip(active, args, strict=True):
                    full[i] = jet[0]
                return [[out] for out in _bind(eqn, full)]

            return evaluate
        lower = at_order(k - 1)

        def differentiate(args: list[list[Any]]) -> list[list[Any]]:
            moving = [
                (i, j) for i, jet in enumerate(args) for j in range(k) if jet[j + 1] is not None
            ]
            base = [
                [jet[j] if jet[j] is not None else jnp.zeros_like(jet[0]) for j in range(k)]
                for jet in args
            ]

            def lower_of(*values: Any) -> list[list[Any]]:
                point = [list(b) for b in base]
                for (i, j), value in zip(moving, values, strict=True):
                    point[i][j] = value
                return lower(point)

            if not moving:
                outs = lower_of()
                return [[*out, jnp.zeros_like(out[-1])] for out in outs]
            outs, tangents = jax.jvp(
                lower_of,
                tuple(base[i][j] for i, j in moving),
                tuple(args[i][j + 1] for i, j in moving),
            )
            return [[*out, tangent[-1]] for out, tangent in zip(outs, tangents, strict=True)]

        return differentiate

    results = at_order(order)(jets)
    outs = [r[0] for r in results]
    terms = [
        [d / math.factorial(j) for j, d in enumerate(r[1:], 1)] if _inexact(v.aval) else None
        for r, v in zip(results, eqn.outvars, strict=True)
    ]
    return outs, terms


SeriesRule = Callable[[list[Any], list[Series], int], tuple[Array, list[Term]]]
_SERIES_RULES: dict[str, SeriesRule] = {}


def taylor_rule(rule: SeriesRule) -> Callable[[Callable[..., Array]], Callable[..., Array]]:
    """Decorator: Taylor mode pushes series through ``fn`` with ``rule``.

    ``fn`` (one array output) keeps its value and its JVP rules; it is wrapped in a
    ``jax.jit`` with a name Taylor mode recognises. ``rule(primals, series, order)``
    returns ``(output, [c_1, ..., c_order])``; a series is the list of normalised
    coefficients ``c_k = D^k / k!`` of an operand, None where all are zero (as is
    any zero coefficient).
    """

    def decorate(fn: Callable[..., Array]) -> Callable[..., Array]:
        def named(*args: Array) -> Array:
            return fn(*args)

        named.__name__ = named.__qualname__ = f"taylor_rule_{len(_SERIES_RULES)}_{fn.__name__}"
        named.__doc__ = fn.__doc__
        _SERIES_RULES[named.__name__] = rule
        return jax.jit(named)

    return decorate


def logsumexp_taylor(
    primals: list[Any], series: list[Series], order: int
) -> tuple[Array, list[Term]]:
    """Taylor rule of ``log sum_j exp(s_j)`` (over all elements), cumulants from moments.

    With ``p = softmax(s_0)`` and ``q(t) = exp(s(t) - s_0)``, ``lse(s(t)) = lse(s_0) +
    log E_p[q(t)]``; the moments ``E_p[q_k]`` are dot products with p. When the
    coefficients of s do not depend on the example (a basis direction through a
    linear head), q does not either, and under ``vmap`` these are matrix products.
    """
    (logits,) = primals
    total = jax.nn.logsumexp(logits)
    weights = jnp.exp(logits - total)
    s = _dense_series(jnp.zeros_like(logits), series[0], order)
    q = _exp_series(s, 1.0, order)
    moments = [1.0] + [None if t is None else jnp.tensordot(t, weights, weights.ndim) for t in q]
    return total, _log_series(moments, 1.0, order)


def _taylor_rule(eqn: JaxprEqn, primals: list[Any], series: list[Series], order: int) -> RuleResult:
    name = eqn.primitive.name
    if name in _CONSTANT or not any(_inexact(v.aval) for v in eqn.outvars):
        return _bind(eqn, primals), [None] * len(eqn.outvars)
    if name in _LINEAR:
        return _linear_rule(eqn, primals, series, order)
    if name in ("mul", "dot_general"):
        return _bilinear_rule(eqn, primals, series, order)
    if name == "div":
        return _div_rule(eqn, primals, series, order)
    if name in ("max", "min"):
        return _choice_rule(eqn, primals, series, order)
    if name in ("reduce_max", "reduce_min"):
        return _reduce_choice_rule(eqn, primals, series, order)
    if name in _UNARY:
        return _unary_rule(eqn, primals, series, order)
    if name in _CALLS and (rule := _SERIES_RULES.get(eqn.params.get("name"))) is not None:
        out, terms = rule(primals, series, order)
        return [out], [terms]
    if name in _CALLS and (sub := _call_jaxpr(eqn)) is not None:
        outs = _taylor_jaxpr(sub, primals, series, order)
        return [p for p, _ in outs], [s for _, s in outs]
    return _jvp_rule(eqn, primals, series, order)


def _taylor_jaxpr(
    closed: ClosedJaxpr, primals: Sequence[Any], series: Sequence[Series], order: int
) -> list[tuple[Any, Series]]:
    """Push truncated series through a closed jaxpr; ``(primal, series)`` per output."""
    jaxpr = closed.jaxpr
    env: dict[Any, tuple[Any, Series]] = {}

    def read(v: Any) -> tuple[Any, Series]:
        return (v.val, None) if isinstance(v, Literal) else env[v]

    for v, value in zip(jaxpr.constvars, closed.consts, strict=True):
        env[v] = (value, None)
    for v, value, s in zip(jaxpr.invars, primals, series, strict=True):
        env[v] = (value, s)
    for eqn in jaxpr.eqns:
        inputs = [read(v) for v in eqn.invars]
        args = [p for p, _ in inputs]
        in_series = [s for _, s in inputs]
        if all(s is None for s in in_series):
            outs, out_series = _bind(eqn, args), [None] * len(eqn.outvars)
        else:
            outs, out_series = _taylor_rule(eqn, args, in_series, order)
        for v, value, s in zip(eqn.outvars, outs, out_series, strict=True):
            if isinstance(v, DropVar):
                continue
            if s is not None and (not _inexact(v.aval) or all(t is None for t in s)):
                s = None
            env[v] = (value, s)
    return [read(v) for v in jaxpr.outvars]


def trace_scalar(f: ScalarFn, x: Array) -> ClosedJaxpr:
    closed = jax.make_jaxpr(f)(x)
    if len(closed.jaxpr.outvars) != 1 or closed.jaxpr.outvars[0].aval.shape != ():
        raise ValueError(f"f must return a scalar, got {closed.out_avals}")
    return closed


def derivatives_from_trace(
    closed: ClosedJaxpr, x: Array, direction: Term, order: int
) -> list[Array]:
    """``[D^m f(x)[v, ..., v] for m = 0..order]`` from one Taylor pass."""
    ((value, series),) = _taylor_jaxpr(closed, [x], [[direction] + [None] * (order - 1)], order)
    out = [value]
    for m, term in enumerate(series or [None] * order, 1):
        out.append(jnp.zeros_like(value) if term is None else _dense(term) * math.factorial(m))
    return out


def taylor_derivatives(f: ScalarFn, x: Array, v: Array, order: int) -> tuple[Array, ...]:
    """Like :func:`directional_derivatives`, in one Taylor-mode pass.

    Args:
      f: scalar function of an array shaped like ``x``.
      x: point, any shape.
      v: direction, same shape (and dtype) as ``x``.
      order: highest order (>= 1).

    Returns:
      ``(f(x), D f(x)[v], ..., D^order f(x)[v, ..., v])``, scalars.
    """
    check_order(order)
    x = jnp.asarray(x)
    with jax.default_matmul_precision("highest"):
        return tuple(derivatives_from_trace(trace_scalar(f, x), x, jnp.asarray(v, x.dtype), order))
