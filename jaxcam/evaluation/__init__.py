"""Evaluating saliency methods on a data set, split by job.

* :mod:`.step`: the jitted step (maps, tie order, perturbed images, sums);
* :mod:`.engine`: streaming and sharding batches through the step;
* :mod:`.results`: rows per method and class, from the sums;
* :mod:`.reports`: tables, markdown, JSON and provenance;
* :mod:`.api`: :func:`evaluate`, the entry point.
"""

from jaxcam.evaluation.api import evaluate, evaluate_methods, method_table, step_config
from jaxcam.evaluation.engine import Engine, Progress, data_set_indices, engine_for
from jaxcam.evaluation.reports import (
    RAISED_MARK,
    evaluation_record,
    format_table,
    markdown_table,
    row_record,
    software_versions,
    table_cells,
    write_results_file,
)
from jaxcam.evaluation.results import Evaluation, MethodResult, evaluation_from_sums
from jaxcam.evaluation.step import (
    HISTOGRAM_MAX_CLASSES,
    EvaluationSums,
    Explainer,
    ReferenceMap,
    StepConfig,
    evaluation_step,
    reference_key,
    zero_evaluation_sums,
)

__all__ = [
    "HISTOGRAM_MAX_CLASSES",
    "RAISED_MARK",
    "Engine",
    "Evaluation",
    "EvaluationSums",
    "Explainer",
    "MethodResult",
    "Progress",
    "ReferenceMap",
    "StepConfig",
    "data_set_indices",
    "engine_for",
    "evaluate",
    "evaluate_methods",
    "evaluation_from_sums",
    "evaluation_record",
    "evaluation_step",
    "format_table",
    "markdown_table",
    "method_table",
    "reference_key",
    "row_record",
    "software_versions",
    "write_results_file",
    "step_config",
    "table_cells",
    "zero_evaluation_sums",
]
