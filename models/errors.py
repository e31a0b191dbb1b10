"""The models' own error type: models/ never imports instrument/, the CLI turns this into one line."""


class ModelError(Exception):
    """A mistake in what a model command was asked for (bad data folder, flag, checkpoint): one line, exit 2."""
