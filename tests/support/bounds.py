"""Pixel bounds more than one test holds images to."""

# bf16 against torch f32 on the 8 prompts of engines.check, of 255: room for another CPU's kernels, not for a wrong
# graph (f32 and bf16 blobs mixed up gave max 255). Measured values beside each use.
BF16_MEAN_BOUND, BF16_MAX_BOUND = 2.0, 64
