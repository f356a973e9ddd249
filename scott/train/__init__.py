"""The training kit every stage shares (the recipe's VAE and teacher, the SCott distiller): keyed generators, the EMA,
the step log and progress bar, the step loop, checkpoints and the latent cache. A fix here reaches all of them."""
