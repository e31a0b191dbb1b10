"""The Conditional Char-RNN: model, training and evaluation."""
