"""edgedet's on-device runtime: the numpy math core, inference backends, detector, camera daemon.

Imports numpy, OpenCV and one inference backend only — never torch or TensorFlow.
"""
