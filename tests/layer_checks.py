"""The checks every tfx_transfer layer and model passes (DESIGN.md convention 2).

`check_layer(make_layer, input_specs, call)` builds the layer, wraps it in a functional model and verifies:
config round trip, symbolic and eager calls agree on shapes (and equal `expected_shape`), the trainable-parameter
count (`trainable_parameters`), dropout acts only with training=True, `.keras` save/load reproduces outputs exactly,
one `fit` step runs and changes the weights, (for layers that take a mask) padding does not change outputs at real
token positions, and under the `mixed_float16` policy the layer keeps float32 variables, computes in float16 and
gives the float32 layer's outputs to float16 precision.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import keras
import numpy as np

from tfx_transfer.checkpoints.loader import model_variables


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


def copy_base_weights(source, target):
    """Assigns `source`'s values to every variable of `target` with the same path (the base under an adaptation)."""
    base = model_variables(source)
    for path, variable in model_variables(target).items():
        if path in base:
            variable.assign(base[path])


def assert_only_trainable_changed(model, before: Dict[str, np.ndarray]):
    """Every variable of `model` whose value differs from `before` ({path: array}, taken before training) is
    trainable, and every trainable one changed: frozen weights stayed bit-identical."""
    trainable = {v.path for v in model.trainable_weights}
    for path, variable in model_variables(model).items():
        changed = not np.array_equal(before[path], np.asarray(variable))
        assert changed == (path in trainable), path


def train_save_and_reload(model, base, data, labels, tmp_path, name="adaptation"):
    """Trains `model` (its strategy applied) two epochs with Adam 1e-2, checks that only its trainable weights
    changed, writes its adaptation file and loads it onto `base`: the reloaded model's outputs equal the trained
    model's. Returns the reloaded model."""
    from tfx_transfer import load_adaptation, save_adaptation

    before = {p: np.asarray(v).copy() for p, v in model_variables(model).items()}
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(data, labels, epochs=2, verbose=0)
    assert_only_trainable_changed(model, before)
    path = tmp_path / f"{name}.safetensors"
    save_adaptation(model, path)
    loaded = load_adaptation(base, path)
    np.testing.assert_array_equal(np.asarray(loaded(data)), np.asarray(model(data)))
    return loaded


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
                sequence_output: bool = True,
                expected_shape: Optional[tuple] = None,
                trainable_parameters: Optional[int] = None,
                mixed_precision: bool = True):
    """Runs the shared checks.

    Args:
        make_layer: builds a fresh layer.
        input_specs: name -> (shape without batch, dtype) of the wrapper model's inputs.
        call: (layer, inputs dict, training) -> one output tensor.
        data: name -> numpy batch.
        has_dropout: whether training=True must change outputs.
        mask_input: name of the 0/1 padding mask in `data` (None: skip the padding check).
        sequence_output: output is [B, T, ...] (padding check compares real positions) vs [B, ...].
        expected_shape: the output shape on `data`.
        trainable_parameters: the layer's trainable parameter count (a formula of the test, not read off the layer).
        mixed_precision: run the mixed_float16 checks (step 7).
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
    if expected_shape is not None:
        assert eager.shape == tuple(expected_shape), (eager.shape, expected_shape)
    if trainable_parameters is not None:
        count = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
        assert count == trainable_parameters, (count, trainable_parameters)

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

    # 7. mixed precision: float32 variables, float16 compute, the float32 layer's outputs to float16 precision
    if mixed_precision:
        check_mixed_precision(make_layer, call, data, layer)
    return model


def check_mixed_precision(make_layer, call, data, reference):
    """Builds `make_layer()` under the global `mixed_float16` policy with `reference`'s weights and compares."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        mixed = make_layer()
        inputs = {k: keras.ops.convert_to_tensor(v) for k, v in data.items()}
        call(mixed, inputs, False)  # builds it
        assert mixed.dtype_policy.name == "mixed_float16", mixed.dtype_policy.name
        floating = [w for w in mixed.weights if "float" in str(w.dtype)]
        assert floating and all(str(w.dtype) == "float32" for w in floating), [str(w.dtype) for w in floating]
        mixed.set_weights(reference.get_weights())
        out = np.asarray(keras.ops.convert_to_numpy(call(mixed, inputs, False)), dtype=np.float32)
    finally:
        keras.config.set_dtype_policy(previous)
    expected = np.asarray(call(reference, inputs, False), dtype=np.float32)
    assert np.all(np.isfinite(out)), "non-finite outputs under mixed_float16"
    scale = max(1.0, float(np.max(np.abs(expected))))
    assert float(np.max(np.abs(out - expected))) <= 2e-2 * scale, float(np.max(np.abs(out - expected)))
