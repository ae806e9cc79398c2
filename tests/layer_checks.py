"""The checks every tfx_transfer layer and model passes (DESIGN.md convention 2).

`check_layer(make_layer, input_specs, call)` builds the layer, wraps it in a functional model and verifies:
config round trip, symbolic and eager calls agree on shapes, dropout acts only with training=True,
`.keras` save/load reproduces outputs exactly, one `fit` step runs and changes the weights, and (for layers
that take a mask) padding does not change outputs at real token positions.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import keras
import numpy as np


def random_bert_inputs(batch=3, seq=7, vocab=100, lengths=None, rng=None):
    """int32 encoder inputs with ragged real lengths (row i has lengths[i] real tokens, the rest padding)."""
    rng = rng or np.random.default_rng(0)
    lengths = lengths if lengths is not None else [seq - (i % 3) * 2 for i in range(batch)]
    ids = rng.integers(5, vocab, size=(batch, seq)).astype("int32")
    mask = np.zeros((batch, seq), "int32")
    types = np.zeros((batch, seq), "int32")
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
        types[row, length // 2:length] = 1
        ids[row, length:] = 0
    return {"input_word_ids": ids, "input_mask": mask, "input_type_ids": types}


def pad_inputs(inputs: Dict[str, np.ndarray], extra: int) -> Dict[str, np.ndarray]:
    """Appends `extra` padding positions (id 0, mask 0, type 0) to every row."""
    return {k: np.pad(v, ((0, 0), (0, extra)) + ((0, 0),) * (v.ndim - 2)) for k, v in inputs.items()}


def _model(layer, input_specs, call):
    symbolic = {name: keras.Input(shape=shape, dtype=dtype, name=name) for name, (shape, dtype) in input_specs.items()}
    return keras.Model(symbolic, call(layer, symbolic, None))


def check_layer(make_layer: Callable[[], keras.layers.Layer],
                input_specs: Dict[str, Tuple[tuple, str]],
                call: Callable,
                data: Dict[str, np.ndarray],
                tmp_path,
                has_dropout: bool = True,
                mask_input: Optional[str] = "input_mask",
                sequence_output: bool = True):
    """Runs the shared checks.

    Args:
        make_layer: builds a fresh layer.
        input_specs: name -> (shape without batch, dtype) of the wrapper model's inputs.
        call: (layer, inputs dict, training) -> one output tensor.
        data: name -> numpy batch.
        has_dropout: whether training=True must change outputs.
        mask_input: name of the 0/1 padding mask in `data` (None: skip the padding check).
        sequence_output: output is [B, T, ...] (padding check compares real positions) vs [B, ...].
    """
    layer = make_layer()
    # 1. config round trip
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config

    # 2. symbolic + eager agree
    model = _model(layer, input_specs, call)
    eager = np.asarray(call(layer, {k: keras.ops.convert_to_tensor(v) for k, v in data.items()}, False))
    symbolic_shape = model.output.shape
    assert len(symbolic_shape) == eager.ndim
    for s, e in zip(symbolic_shape, eager.shape):
        assert s is None or s == e, (symbolic_shape, eager.shape)
    np.testing.assert_allclose(np.asarray(model(data, training=False)), eager, rtol=1e-6, atol=1e-6)
    assert np.all(np.isfinite(eager))

    # 3. dropout only with training=True
    inference_a = np.asarray(model(data, training=False))
    inference_b = np.asarray(model(data, training=False))
    np.testing.assert_array_equal(inference_a, inference_b)
    if has_dropout:
        assert not np.allclose(np.asarray(model(data, training=True)), inference_a), "dropout did not act in training"

    # 4. .keras save / load gives identical outputs
    path = str(tmp_path / f"{layer.name}.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(np.asarray(loaded(data, training=False)), inference_a)

    # 5. one fit step runs and moves the weights
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    # Eager: a tiny model's step takes milliseconds, while tracing train_function costs seconds per layer tested.
    # Graph-mode training is covered by the strategy and end-to-end tests.
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse", run_eagerly=True)
    target = np.random.default_rng(1).normal(size=inference_a.shape).astype("float32")
    history = model.fit(data, target, batch_size=len(target), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = [not np.array_equal(b, keras.ops.convert_to_numpy(w)) for b, w in zip(before, model.trainable_weights)]
    assert any(changed), "fit did not change any weight"

    # 6. padding does not change outputs at real positions
    if mask_input is not None:
        padded = pad_inputs(data, extra=5)
        out_short = np.asarray(model(data, training=False))
        out_long = np.asarray(model(padded, training=False))
        if sequence_output:
            real = data[mask_input].astype(bool)
            np.testing.assert_allclose(out_long[:, :out_short.shape[1]][real], out_short[real], atol=1e-5, rtol=1e-5)
        else:
            np.testing.assert_allclose(out_long, out_short, atol=1e-5, rtol=1e-5)
    return model
