"""The recipe that trains the embedded default model: VAE -> latent cache -> teacher -> distilled student -> export.

`python -m scott.recipe.embedded --out runs/embedded [--resume]` runs every stage; each stage checkpoints and is
skipped on resume once complete.
"""
