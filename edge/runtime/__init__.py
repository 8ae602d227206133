"""From a frame to detections: pre-processing, inference backends, decoders, the detector, media I/O."""
