"""The DCRNN WGAN-GP piano-roll generator: model, critic, data, training, evaluation."""
