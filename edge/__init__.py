"""edgedet's device side, in floors: ``core`` (the math) < ``datasets`` < ``runtime`` (frame -> detections)
< ``eval`` and ``camera`` (the daemon) < ``bench`` (everything that measures).

Imports numpy, OpenCV and one inference backend only — never torch, TensorFlow, ``edgedet.training`` or
``edgedet.convert``.
"""
