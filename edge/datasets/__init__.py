"""Dataset readers (Pascal VOC, COCO JSON, YOLO txt, WIDER FACE) and the synthetic default dataset.

Torch-free (stdlib, numpy, OpenCV) so they run on the device too. Every reader returns a ``Dataset``
of ``Sample`` records with corner-pixel boxes and a ``LoadReport`` of every label it had to skip.
"""

from edgedet.edge.datasets.class_names import ClassMapper
from edgedet.edge.datasets.coco import read_coco
from edgedet.edge.datasets.image_files import image_size, read_image
from edgedet.edge.datasets.report import Issue, LoadReport
from edgedet.edge.datasets.sample import Dataset, Sample
from edgedet.edge.datasets.spec import FORMATS, DataSpec, load_dataset, parse_spec
from edgedet.edge.datasets.synthetic import (
    DEFAULT_CLASSES,
    FrameTruth,
    generate_synthetic,
    render_video,
    synthetic_root,
)
from edgedet.edge.datasets.synthetic_scene import SHAPES
from edgedet.edge.datasets.voc import read_voc
from edgedet.edge.datasets.wider import read_wider
from edgedet.edge.datasets.yolo import read_yolo

__all__ = [
    "DEFAULT_CLASSES",
    "FORMATS",
    "SHAPES",
    "ClassMapper",
    "DataSpec",
    "Dataset",
    "FrameTruth",
    "Issue",
    "LoadReport",
    "Sample",
    "generate_synthetic",
    "image_size",
    "load_dataset",
    "parse_spec",
    "read_coco",
    "read_image",
    "read_voc",
    "read_wider",
    "read_yolo",
    "render_video",
    "synthetic_root",
]
