"""edgedet: tiny conv_dw detectors from desktop training to an edge camera.

One root name for the whole project: ``edgedet.edge`` (the device: math core, datasets, runtime, eval,
camera daemon, benchmarks), ``edgedet.training`` (PyTorch) and ``edgedet.convert`` (ONNX / TFLite).
This package itself holds only what sits on top of all three: the command line and the demo.
"""
