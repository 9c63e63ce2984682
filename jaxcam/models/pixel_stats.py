"""Model-side pixel normalisation: a model sees ``(x - pixel_mean) / pixel_std`` of raw
pixels ``x`` in [0, 1] (:class:`jaxcam.models.CAMClassifier`), so that masking acts on
raw pixels (black = 0) whatever the normalisation.
"""

from __future__ import annotations

# Models jaxcam trains from scratch (CAMClassifier's and ModelSpec's defaults):
# [0, 1] -> [-2, 2].
DEFAULT_PIXEL_MEAN = 0.5
DEFAULT_PIXEL_STD = 0.25

# Keras' ``inception_resnet_v2.preprocess_input`` maps uint8 pixels u to u / 127.5 - 1;
# with x = u / 255 that is (x - 0.5) / 0.5.
KERAS_PIXEL_MEAN = 0.5
KERAS_PIXEL_STD = 0.5

__all__ = ["DEFAULT_PIXEL_MEAN", "DEFAULT_PIXEL_STD", "KERAS_PIXEL_MEAN", "KERAS_PIXEL_STD"]
