"""Probing classifiers (models/probes.py): the probed features are the encoder's layers, padding does not reach a
sequence probe, and probes trained together equal probes trained alone with a frozen encoder left bit-identical."""

import keras
import numpy as np
import pytest

from conftest import TINY
from tfx_transfer import BertEncoder
from tfx_transfer.adaptation.optimizers import create_optimizer
from tfx_transfer.adaptation.strategies import apply_strategy
from tfx_transfer.models.probes import LayerProbes, layer_features, parse_probe_layers


def _encoder(seed=0):
    keras.utils.set_random_seed(seed)
    return BertEncoder(**TINY)


def _inputs(rng, batch=6, length=9):
    lengths = rng.integers(3, length + 1, batch)
    mask = (np.arange(length)[None] < lengths[:, None]).astype("int32")
    ids = rng.integers(5, TINY["vocab_size"], (batch, length)).astype("int32") * mask
    return {"input_word_ids": ids, "input_mask": mask, "input_type_ids": np.zeros_like(ids)}, mask


def test_parse_probe_layers():
    assert parse_probe_layers("all", range(7)) == list(range(7))
    assert parse_probe_layers(" 6,0, 3,3", range(7)) == [0, 3, 6]
    for bad in ("7", "a,b", ",", "-1"):
        with pytest.raises(ValueError, match="--probe_layers"):
            parse_probe_layers(bad, range(7))


def test_layer_features_are_the_embeddings_and_every_layer():
    encoder = _encoder()
    features, numbers = layer_features(encoder)
    assert numbers == [0, 1, 2]
    x, _ = _inputs(np.random.default_rng(0))
    outputs = features(x)
    reference = encoder(x)
    np.testing.assert_allclose(outputs[0], encoder.get_layer("embeddings")(x["input_word_ids"], x["input_type_ids"]),
                               atol=1e-6)
    for got, want in zip(outputs[1:], reference["encoder_outputs"]):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_probe_outputs_and_padding():
    encoder = _encoder()
    rng = np.random.default_rng(1)
    x, mask = _inputs(rng)
    tagger = LayerProbes(encoder, 5, per_token=True)
    logits = keras.ops.convert_to_numpy(tagger(x))
    assert logits.shape == (6, 9, 3, 5) and tagger.layers_probed == [0, 1, 2]
    features, _ = layer_features(encoder)
    kernel, bias = tagger.get_layer("probe_1").get_weights()
    np.testing.assert_allclose(logits[:, :, 1], np.asarray(features(x)[1]) @ kernel + bias, atol=1e-5)
    # A sequence probe reads the mean of the real tokens: extra padding changes nothing.
    sequence = LayerProbes(encoder, 3, per_token=False, layers=[0, 2])
    assert tuple(sequence(x).shape) == (6, 2, 3)
    padded = {k: np.pad(v, ((0, 0), (0, 4))) for k, v in x.items()}
    np.testing.assert_allclose(sequence(padded), sequence(x), atol=1e-5)
    with pytest.raises(ValueError, match="layers"):
        LayerProbes(encoder, 3, per_token=False, layers=[3])


def _train(model, x, y, steps=6):
    model.compile(optimizer=create_optimizer(1e-2, steps, 0, weight_decay=0.01, global_clipnorm=None))
    model.fit(x, y, batch_size=3, epochs=3, shuffle=False, verbose=0)


@pytest.mark.parametrize("per_token,num_labels", [(True, 4), (False, 3), (False, 1)])
def test_probes_trained_together_equal_probes_trained_alone(per_token, num_labels):
    rng = np.random.default_rng(2)
    x, mask = _inputs(rng)
    if per_token:
        y = np.where(mask == 1, rng.integers(0, num_labels, mask.shape), -1).astype("int32")
    else:
        y = rng.normal(size=6).astype("float32") if num_labels == 1 else rng.integers(0, num_labels, 6)
    together = LayerProbes(_encoder(), num_labels, per_token)
    apply_strategy(together, "feature_extraction")
    frozen = [v.numpy().copy() for v in together.encoder.weights]
    initial = {n: together.get_layer(f"probe_{n}").get_weights() for n in together.layers_probed}
    _train(together, x, y)
    assert all(np.array_equal(v.numpy(), w) for v, w in zip(together.encoder.weights, frozen))
    for number in (0, 2):
        alone = LayerProbes(_encoder(), num_labels, per_token, layers=[number])
        apply_strategy(alone, "feature_extraction")
        alone.get_layer(f"probe_{number}").set_weights(initial[number])
        _train(alone, x, y)
        moved = np.abs(together.get_layer(f"probe_{number}").get_weights()[0] - initial[number][0]).max()
        assert moved > 1e-3
        for got, want in zip(together.get_layer(f"probe_{number}").get_weights(),
                             alone.get_layer(f"probe_{number}").get_weights()):
            np.testing.assert_allclose(got, want, atol=1e-6)
