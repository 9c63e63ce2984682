"""Label-free saliency metrics: Average Drop (eq. 10) and Black Average Drop (eq. 11).

A metric is a unit (:class:`Metric`): a per-image perturbation of the image
according to its map, and a reduction of the model's scores into mergeable sums and
a summary. AD and BAD are two registered entries (:mod:`.opacity_mask`,
:mod:`.black_mask`); :func:`register_metric` adds more, and the evaluation
engine, the per-batch API (:func:`metric_scores`), the tables and the CLI take every
registered metric by name. BAD with other fills than black for the removed pixels:
:mod:`.blur_mask` (BAD-blur), :mod:`.mean_mask` (BAD-mean), :mod:`.noisy_linear_mask`
(BAD-ROAD, ROAD's noisy linear imputation) and :mod:`.counterfactual_mask` (BAD-twin,
the phantom's lesion-free twin); the default metrics stay AD and BAD.

* :mod:`.ranking`: which pixels a map keeps (tie order, ranks, the top-k cut);
* :mod:`.drops`: the drop statistics (per-image terms, sums, summaries);
* :mod:`.alpha`: choosing BAD's alpha from the maps;
* :mod:`.batch`: scores for one batch of in-memory maps.
"""

from jaxcam.metrics.alpha import (
    best_alpha,
    choose_alpha,
    mean_pair_difference,
    mean_surely_different,
    method_pairs,
)
from jaxcam.metrics.batch import (
    MaskedScores,
    MetricScores,
    average_drop,
    black_average_drop,
    check_maps,
    masked_scores,
    metric_scores,
    perturbed_images,
)
from jaxcam.metrics.black_mask import BLACK_AVERAGE_DROP, black_image, keep_top_pixels
from jaxcam.metrics.blur_mask import (
    BLUR_SIGMA_FRACTION,
    BLURRED_AVERAGE_DROP,
    blur_sigma,
    blurred_fill_image,
    gaussian_blur,
)
from jaxcam.metrics.counterfactual_mask import COUNTERFACTUAL_AVERAGE_DROP, counterfactual_image
from jaxcam.metrics.drops import (
    DROP_REDUCTION,
    NUM_RATIO_BINS,
    RATIO_BINS_PER_OCTAVE,
    RATIO_OCTAVES,
    DropReduction,
    DropSummary,
    DropSums,
    DropTerms,
    add_drops,
    drop_terms,
    sum_over,
    summarise,
    summarise_drop,
    take,
    zero_sums,
)
from jaxcam.metrics.mean_mask import MEAN_AVERAGE_DROP, channel_means, mean_fill_image
from jaxcam.metrics.noisy_linear_mask import (
    NEIGHBOUR_WEIGHTS,
    NOISE_SCALE,
    NOISY_LINEAR_AVERAGE_DROP,
    LinearImputation,
    linear_imputation,
    noisy_linear_image,
    noisy_linear_perturbation,
)
from jaxcam.metrics.opacity_mask import AVERAGE_DROP, explanation_image
from jaxcam.metrics.ranking import (
    ALPHA_GRID,
    DEFAULT_TIES,
    TIE_POLICIES,
    Ranking,
    ThresholdSplit,
    check_ties,
    kept_pixel_count,
    pixel_ranks,
    rank_pixels,
    smooth_random_field,
    surely_different,
    threshold_split,
    tie_priority,
    top_pixel_mask,
)
from jaxcam.metrics.registry import (
    DEFAULT_METRICS,
    Metric,
    Perturbation,
    Reduction,
    check_metrics,
    get_metric,
    metric_names,
    perturbation_key,
    register_metric,
    removal_metric,
)

__all__ = [
    "ALPHA_GRID",
    "AVERAGE_DROP",
    "BLACK_AVERAGE_DROP",
    "BLURRED_AVERAGE_DROP",
    "BLUR_SIGMA_FRACTION",
    "COUNTERFACTUAL_AVERAGE_DROP",
    "DEFAULT_METRICS",
    "DEFAULT_TIES",
    "DROP_REDUCTION",
    "MEAN_AVERAGE_DROP",
    "NEIGHBOUR_WEIGHTS",
    "NOISE_SCALE",
    "NOISY_LINEAR_AVERAGE_DROP",
    "NUM_RATIO_BINS",
    "RATIO_BINS_PER_OCTAVE",
    "RATIO_OCTAVES",
    "TIE_POLICIES",
    "DropReduction",
    "DropSummary",
    "DropSums",
    "DropTerms",
    "LinearImputation",
    "MaskedScores",
    "Metric",
    "MetricScores",
    "Perturbation",
    "Ranking",
    "Reduction",
    "ThresholdSplit",
    "add_drops",
    "average_drop",
    "best_alpha",
    "black_average_drop",
    "black_image",
    "blur_sigma",
    "blurred_fill_image",
    "channel_means",
    "check_maps",
    "check_metrics",
    "check_ties",
    "counterfactual_image",
    "choose_alpha",
    "drop_terms",
    "explanation_image",
    "gaussian_blur",
    "get_metric",
    "keep_top_pixels",
    "kept_pixel_count",
    "linear_imputation",
    "masked_scores",
    "mean_fill_image",
    "mean_pair_difference",
    "mean_surely_different",
    "method_pairs",
    "metric_names",
    "metric_scores",
    "noisy_linear_image",
    "noisy_linear_perturbation",
    "perturbation_key",
    "perturbed_images",
    "pixel_ranks",
    "rank_pixels",
    "register_metric",
    "removal_metric",
    "smooth_random_field",
    "sum_over",
    "summarise",
    "summarise_drop",
    "surely_different",
    "take",
    "threshold_split",
    "tie_priority",
    "top_pixel_mask",
    "zero_sums",
]
