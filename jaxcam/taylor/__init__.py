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

* :mod:`.terms`: series coefficients (arrays, zeros, basis directions) and their algebra;
* :mod:`.equations`: evaluating one jaxpr equation;
* :mod:`.series`: recurrences for exp, log, powers and functions given by their derivative;
* :mod:`.linear_rules`, :mod:`.nonlinear_rules`: the series rules per primitive;
* :mod:`.jvp_fallback`: every other primitive, by nested ``jax.jvp`` (one linearisation
  for a piecewise-linear one);
* :mod:`.dataflow`: which outputs of a program depend on an input, and whether they are
  piecewise linear in it (:func:`is_piecewise_linear`);
* :mod:`.custom_rules`: :func:`taylor_rule` and :func:`logsumexp_taylor`;
* :mod:`.interpreter`: the jaxpr walk and :func:`taylor_derivatives`.
"""

from jaxcam.taylor.custom_rules import SeriesRule, logsumexp_taylor, taylor_rule
from jaxcam.taylor.dataflow import is_piecewise_linear, reads_first_input
from jaxcam.taylor.interpreter import (
    ScalarFn,
    check_order,
    derivatives_from_trace,
    taylor_derivatives,
    trace_scalar,
)
from jaxcam.taylor.terms import BasisDirection, RuleResult, Series, Term

__all__ = [
    "BasisDirection",
    "RuleResult",
    "ScalarFn",
    "Series",
    "SeriesRule",
    "Term",
    "check_order",
    "derivatives_from_trace",
    "is_piecewise_linear",
    "logsumexp_taylor",
    "reads_first_input",
    "taylor_derivatives",
    "taylor_rule",
    "trace_scalar",
]
