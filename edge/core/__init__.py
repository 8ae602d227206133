"""The math core (numpy only, imports nothing else of ours): boxes, the SSD box coder, priors, matching,
NMS, CenterNet's gaussian and heatmap decode, and the model spec every model file carries."""
