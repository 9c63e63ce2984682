"""Real images from class-per-folder directories (and prepared TFDS sets), without TensorFlow.

The names of four modules, re-exported here:

- :mod:`jaxcam.data.images`: reading and preprocessing one image file with PIL
  (``read_image``, ``IMAGE_EXTENSIONS``);
- :mod:`jaxcam.data.folder_scan`: source layouts, ``root/<split>/<class>/*`` or
  ``root/<class>/*``, with the entries left out (``split_names``, ``ALL_SPLIT``);
- :mod:`jaxcam.data.folder_builders`: the TFDS builders ``jaxcam_image_folder`` and
  ``jaxcam_chest_xray``, preparing a folder once into array_record under a lock;
- :mod:`jaxcam.data.prepared`: prepared sets as random-access ``ImageSplit`` s
  (``load_image_folder``, ``load_chest_xray``, ``load_tfds``, ``class_counts``).
"""

from __future__ import annotations

from jaxcam.data.folder_builders import (
    CHEST_XRAY_CLASSES,
    CHEST_XRAY_SPLITS,
    FolderConfig,
    JaxcamChestXray,
    JaxcamImageFolder,
    folder_config_name,
)
from jaxcam.data.folder_scan import ALL_SPLIT, split_names
from jaxcam.data.images import IMAGE_EXTENSIONS, read_image
from jaxcam.data.prepared import (
    ImageSplit,
    class_counts,
    load_chest_xray,
    load_image_folder,
    load_tfds,
)

__all__ = [
    "ALL_SPLIT",
    "CHEST_XRAY_CLASSES",
    "CHEST_XRAY_SPLITS",
    "IMAGE_EXTENSIONS",
    "FolderConfig",
    "ImageSplit",
    "JaxcamChestXray",
    "JaxcamImageFolder",
    "class_counts",
    "folder_config_name",
    "load_chest_xray",
    "load_image_folder",
    "load_tfds",
    "read_image",
    "split_names",
]
