"""The saliency method registry: one entry per method (or named variant of one).

An entry names a per-example function ``(model, A (h, w, K), c, **options) -> L (h, w)``
with what tables, the CLI and the experiments need: its display name, the options its
name stands for, whether it takes the raw image, and its cost class. A new method is
one file (the function) and one :func:`register_saliency_method` call; it then works
in :func:`jaxcam.saliency_maps`, :func:`jaxcam.evaluate`, the CLI's ``--methods`` and
every experiment that selects methods by cost.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax

from jaxcam.saliency.ablation_cam import ablation_cam
from jaxcam.saliency.cam import cam
from jaxcam.saliency.eigen_cam import eigen_cam
from jaxcam.saliency.grad_cam import grad_cam
from jaxcam.saliency.grad_cam_plus_plus import grad_cam_plus_plus
from jaxcam.saliency.hires_cam import hires_cam
from jaxcam.saliency.layer_cam import layer_cam
from jaxcam.saliency.score_cam import score_cam
from jaxcam.saliency.xgrad_cam import xgrad_cam

Array = jax.Array
SaliencyMethod = Callable[..., Array]

#: Cost classes, per image beyond the forward that gives A (README "Saliency methods
#: and their cost"): ``one_pass`` - a product, one gradient or one SVD; ``layer_passes``
#: - K passes through the rest of the network after the layer (through the pooled
#: features for a pooled head); ``network_passes`` - K forwards of the whole network;
#: ``derivative_passes`` - exact higher-order derivatives (K or h*w*K Taylor passes).
COSTS: tuple[str, ...] = ("one_pass", "layer_passes", "network_passes", "derivative_passes")
#: The cost classes an experiment may run on every image without a second thought.
CHEAP_COSTS: tuple[str, ...] = ("one_pass", "layer_passes")


@dataclasses.dataclass(frozen=True)
class MethodInfo:
    """A registered method: ``function`` called with ``options`` (plus the caller's)."""

    name: str
    function: SaliencyMethod
    display: str
    options: tuple[tuple[str, Any], ...] = ()
    needs_image: bool = False
    cost: str = "one_pass"

    def row(self) -> tuple[str, dict[str, Any]]:
        """``(name, options)``: how :func:`jaxcam.evaluate` takes this method as a row."""
        return self.name, dict(self.options)


_METHODS: dict[str, MethodInfo] = {}


def register_saliency_method(
    name: str,
    method: SaliencyMethod,
    *,
    needs_image: bool = False,
    display: str | None = None,
    options: Mapping[str, Any] | None = None,
    cost: str = "one_pass",
) -> MethodInfo:
    """Register ``method(model, feature_map, class_index, **options) -> (h, w)`` as ``name``.

    Args:
      name: the registry key (``--methods`` on the command line).
      method: the per-example function.
      needs_image: also call it with ``image=`` the raw image (H, W, C) A comes from.
      display: its row label in tables (default ``name``).
      options: the options ``name`` stands for (e.g. ``{"derivatives": "exact"}``);
        a caller's options override them.
      cost: one of :data:`COSTS`.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"method name must be a non-empty string, got {name!r}")
    if name in _METHODS:
        raise ValueError(f"saliency method {name!r} is already registered")
    if not callable(method):
        raise TypeError(f"saliency method {name!r} must be callable, got {type(method).__name__}")
    if cost not in COSTS:
        raise ValueError(f"cost of method {name!r} must be one of {COSTS}, got {cost!r}")
    label = name if display is None else str(display)
    taken = [info.name for info in _METHODS.values() if info.display == label]
    if taken:
        raise ValueError(f"display name {label!r} of method {name!r} is taken by {taken[0]!r}")
    info = MethodInfo(
        name=name,
        function=method,
        display=label,
        options=tuple(sorted(dict(options or {}).items())),
        needs_image=bool(needs_image),
        cost=cost,
    )
    _METHODS[name] = info
    return info


def method_info(name: str) -> MethodInfo:
    if name not in _METHODS:
        raise ValueError(f"unknown saliency method {name!r}; known: {', '.join(_METHODS)}")
    return _METHODS[name]


def get_saliency_method(name: str) -> SaliencyMethod:
    """The registered function of ``name`` (ValueError listing the known names)."""
    return method_info(name).function


def method_names(costs: Sequence[str] = COSTS) -> tuple[str, ...]:
    """Registered names whose cost class is in ``costs``, in registration order."""
    return tuple(name for name, info in _METHODS.items() if info.cost in costs)


def method_rows(names: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Display name -> ``(name, options)`` for :func:`jaxcam.evaluate`, in order."""
    return {method_info(n).display: method_info(n).row() for n in names}


def example_method(name: str, options: Any, image: Array) -> SaliencyMethod:
    """Method ``name`` as ``(model, A, c) -> L``: its registered options, then ``options``
    (a mapping or (key, value) pairs), and the image (H, W, C) when it needs it."""
    info = method_info(name)
    extra = {"image": image} if info.needs_image else {}
    return functools.partial(info.function, **{**dict(info.options), **dict(options)}, **extra)


class _Functions(Mapping[str, SaliencyMethod]):
    """Read-only view name -> function of the registry."""

    def __getitem__(self, name: str) -> SaliencyMethod:
        if name not in _METHODS:
            raise KeyError(name)
        return _METHODS[name].function

    def __iter__(self) -> Iterator[str]:
        return iter(_METHODS)

    def __len__(self) -> int:
        return len(_METHODS)


#: name -> registered function (a live, read-only view of the registry).
SALIENCY_METHODS: Mapping[str, SaliencyMethod] = _Functions()

register_saliency_method("cam", cam, display="CAM")
register_saliency_method("grad_cam", grad_cam, display="Grad-CAM")
register_saliency_method(
    "grad_cam_plus_plus",
    grad_cam_plus_plus,
    display="Grad-CAM++",
    options={"derivatives": "closed_form"},
)
register_saliency_method(
    "grad_cam_plus_plus_exact",
    grad_cam_plus_plus,
    display="Grad-CAM++ exact",
    options={"derivatives": "exact"},
    cost="derivative_passes",
)
register_saliency_method("hires_cam", hires_cam, display="HiResCAM")
register_saliency_method("xgrad_cam", xgrad_cam, display="XGrad-CAM")
register_saliency_method("layer_cam", layer_cam, display="LayerCAM")
register_saliency_method(
    "score_cam", score_cam, display="Score-CAM", needs_image=True, cost="network_passes"
)
register_saliency_method("ablation_cam", ablation_cam, display="Ablation-CAM", cost="layer_passes")
register_saliency_method("eigen_cam", eigen_cam, display="Eigen-CAM")

#: Table 1's methods, in the paper's order (Grad-CAM++ in the paper's closed form).
PAPER_METHOD_NAMES: tuple[str, ...] = ("cam", "grad_cam", "grad_cam_plus_plus")
#: Table 1's rows: display name -> (registered method, options).
PAPER_METHODS: dict[str, tuple[str, dict[str, Any]]] = method_rows(PAPER_METHOD_NAMES)
#: The other methods of the library (issue 11), as rows.
MORE_METHODS: dict[str, tuple[str, dict[str, Any]]] = method_rows(
    ("hires_cam", "xgrad_cam", "layer_cam", "score_cam", "ablation_cam", "eigen_cam")
)
