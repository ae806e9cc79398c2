"""AdapterDrop (Rücklé et al. 2021): no adaptation in the lowest layers, and nothing trains below the first adapted
one, so the backward pass stops there."""

import pytest
import tensorflow as tf

from tfx_transfer import AdapterConfig, BertClassifier, BertEncoder, apply_strategy
from tfx_transfer.jobs.adapter_setup import adapter_config
from tfx_transfer.jobs.errors import FlagError
from tfx_transfer.jobs.options import ModelOptions

from conftest import TINY
from layer_checks import random_bert_inputs


def test_dropped_layers_hold_no_adapters_and_nothing_below_the_adapted_ones_trains():
    model = _adapted(drop=2)
    adapters = {v.path.split("/")[0] for v in model.weights if "adapter" in v.path}
    assert adapters == {"transformer_layer_2"}
    trainable = [v.path for v in model.trainable_weights]
    assert all(p.startswith(("transformer_layer_2/", "classifier/")) for p in trainable), trainable
    assert any("layer_norm" in p for p in trainable)  # the adapted layer's LayerNorms still train (Houlsby)
    # The traced training step's backward pass stops above layer 2: the same forward, fewer matmuls in all.
    assert _step_matmuls(model) < _step_matmuls(_adapted(drop=0))


def _adapted(drop):
    model = BertClassifier(BertEncoder(**{**TINY, "num_hidden_layers": 3},
                                       adapters=AdapterConfig(size=4, drop_lowest=drop)), 2)
    apply_strategy(model, "adapters")
    return model


def _step_matmuls(model):
    """MatMul ops in the traced graph of a training step's loss and gradients."""
    @tf.function(autograph=False)
    def step(inputs):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(inputs, training=True))
        return tape.gradient(loss, model.trainable_weights)

    graph = step.get_concrete_function(random_bert_inputs(2, 5, 60)).graph
    return sum(op.type in ("MatMul", "BatchMatMulV2") for op in graph.get_operations())


def test_adapter_drop_flag_and_refusals():
    config = adapter_config(ModelOptions(adaptation="adapters", adapter_drop=2))
    assert config == AdapterConfig(kind="houlsby", size=64, drop_lowest=2)
    assert adapter_config(ModelOptions(adaptation="lora", adapter_drop=1)).drop_lowest == 1
    with pytest.raises(FlagError, match="--adapter_drop.*prompt"):
        adapter_config(ModelOptions(adaptation="adapters", adapter_kind="prompt", adapter_drop=1))
    with pytest.raises(ValueError, match="leaves no layer"):
        BertEncoder(**TINY, adapters=AdapterConfig(size=4, drop_lowest=2))
