"""Accuracy through the device code path: COCO metrics, evaluation, operating point, paired bootstrap."""
