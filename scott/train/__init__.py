"""The training kit every stage shares (the recipe's VAE and teacher, the SCott distiller): keyed generators, the EMA,
the step log and progress bar. A fix here reaches all of them."""
