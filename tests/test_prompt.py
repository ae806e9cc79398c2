"""Prompt tuning (Lester et al. 2021): trainable vectors after [CLS] in the first layer's input (layers/prompt.py)."""

import keras
import numpy as np
import pytest

from tfx_transfer import AdapterConfig, BertClassifier, BertEncoder, apply_strategy
from tfx_transfer.adaptation import ablate_adapters
from tfx_transfer.checkpoints.loader import model_variables
from tfx_transfer.layers.prompt import prompts_from_vocabulary

from conftest import TINY
from layer_checks import check_layer, copy_base_weights, pad_inputs, random_bert_inputs, train_save_and_reload

SPECS = {"input_word_ids": ((None,), "int32"), "input_mask": ((None,), "int32"), "input_type_ids": ((None,), "int32")}
PROMPT = AdapterConfig(kind="prompt", prompt_length=3)


def test_prompt_tuning_passes_the_shared_checks(tmp_path):
    base = sum(int(np.prod(v.shape)) for v in BertEncoder(**TINY).weights)
    check_layer(lambda: BertEncoder(**TINY, adapters=PROMPT), SPECS,
                lambda enc, x, training: (lambda o: o["sequence_output"] + o["pooled_output"][:, None, :])(
                    enc(x, training=training)),
                random_bert_inputs(3, 7, 60), tmp_path, trainable_parameters=base + 3 * TINY["hidden_size"])


def test_prompts_sit_after_cls_unmasked_and_leave_the_outputs():
    """The prompted encoder equals the base encoder run on [CLS] p_1..p_P t_1..t_n embeddings, outputs at the prompts
    removed; shapes and padding behave as without prompts."""
    keras.utils.set_random_seed(2)
    base = BertEncoder(**TINY)
    prompted = BertEncoder(**TINY, adapters=PROMPT)
    copy_base_weights(base, prompted)
    data = random_bert_inputs(2, 6, 60, lengths=[6, 4])
    out = prompted(data)
    assert out["sequence_output"].shape == (2, 6, 16) and len(out["encoder_outputs"]) == 2
    # The same computation by hand: embeddings, prompts inserted, the base's blocks and pooler.
    x = base.get_layer("embeddings")(data["input_word_ids"], data["input_type_ids"])
    prompts = np.broadcast_to(np.asarray(model_variables(prompted)["soft_prompt/prompts"])[None], (2, 3, 16))
    x = np.concatenate([np.asarray(x)[:, :1], prompts, np.asarray(x)[:, 1:]], axis=1)
    mask = np.concatenate([data["input_mask"][:, :1], np.ones((2, 3), "int32"), data["input_mask"][:, 1:]], axis=1)
    for index in range(TINY["num_hidden_layers"]):
        x = base.get_layer(f"transformer_layer_{index}")(x, attention_mask=mask)
    x = np.asarray(x)
    expected = np.concatenate([x[:, :1], x[:, 4:]], axis=1)
    np.testing.assert_allclose(np.asarray(out["sequence_output"]), expected, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["pooled_output"]),
                               np.asarray(base.get_layer("pooler")(x[:, :1])), atol=1e-5)
    padded = prompted(pad_inputs(data, 3))["sequence_output"]  # padding stays invisible to the real tokens
    np.testing.assert_allclose(np.asarray(padded)[0, :6], np.asarray(out["sequence_output"])[0], atol=1e-5)


def test_prompt_tuning_trains_the_prompts_alone_and_round_trips(tmp_path):
    keras.utils.set_random_seed(3)
    base = BertEncoder(**TINY)
    encoder = BertEncoder(**TINY, adapters=PROMPT)
    copy_base_weights(base, encoder)
    ids = prompts_from_vocabulary(encoder, seed=1, first_id=10)
    embedded = np.asarray(base.get_layer("embeddings")(ids[:, None].astype("int32"), np.zeros((3, 1), "int32")))
    np.testing.assert_allclose(np.asarray(model_variables(encoder)["soft_prompt/prompts"]), embedded[:, 0], atol=1e-6)
    model = BertClassifier(encoder, 2)
    report = apply_strategy(model, "adapters")
    assert report.trainable == 3 * 16 + 16 * 2 + 2  # the prompts and the head: no LayerNorms (Lester et al.)
    train_save_and_reload(model, base, random_bert_inputs(4, 7, 60), np.array([0, 1, 0, 1]), tmp_path)
    with pytest.raises(ValueError, match="Prompt tuning has no identity setting"):
        with ablate_adapters(model):
            pass
    with pytest.raises(ValueError, match="prompt_length=0"):
        AdapterConfig(kind="prompt", prompt_length=0)


def test_run_classifier_prompt_tuning_starts_from_vocabulary_embeddings(tiny_model, tmp_path, absl_log):
    from test_run_classifier import COMMON, make_glue_dir, run_job

    data_dir = make_glue_dir("SST-2", tmp_path, np.random.default_rng(0))
    assert run_job(["--task_name=SST-2", f"--data_dir={data_dir}", f"--pretrained={tiny_model}",
                    f"--output_dir={tmp_path / 'out'}", "--do_train", "--adaptation=adapters", "--adapter_kind=prompt",
                    "--prompt_length=4", "--verbosity=0"] + COMMON) == 0
    assert "Prompt tuning: 4 prompts from the embeddings of vocabulary ids" in absl_log.text
