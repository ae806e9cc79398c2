"""Activation functions by the canonical names of `tfx_transfer.config.canonical_activation`."""

import keras

from tfx_transfer.config import canonical_activation


def gelu_exact(x):
    """GELU with the exact Gaussian CDF: x * Phi(x) (Hendrycks & Gimpel 2016; Hugging Face "gelu")."""
    return keras.activations.gelu(x, approximate=False)


def gelu_approximate(x):
    """GELU with the tanh approximation (Google TF1 BERT, keras-hub, HF "gelu_new")."""
    return keras.activations.gelu(x, approximate=True)


_FUNCTIONS = {
    "gelu": gelu_exact,
    "gelu_approximate": gelu_approximate,
    "relu": keras.activations.relu,
    "tanh": keras.activations.tanh,
    "silu": keras.activations.silu,
}


def get_activation(name: str, what: str = "hidden_act"):
    """Returns the function for `name` (any alias `canonical_activation` accepts; `what` names the setting in the
    error for an unknown one)."""
    return _FUNCTIONS[canonical_activation(name, what)]
