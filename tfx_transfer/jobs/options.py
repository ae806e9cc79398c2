"""What a job was asked to do, as frozen dataclasses: `jobs/flags.py` parses the command line into them once, and
every job function takes the part it needs as an argument (no function reads absl's FLAGS).

    ModelOptions         where the initial model comes from, and which weights train (--init_checkpoint, ...)
    TrainingOptions      how it trains (--learning_rate, --lr_schedule, --l2sp, ...)
    OutputOptions        where results, checkpoints, the final model and exports go
    DistributionOptions  tf.distribute (--distribution_strategy, ...)
    ClassifierOptions    run_classifier.py: the above plus the task, data files and its schemes
    SquadOptions         run_squad.py: the above plus the SQuAD files and post-processing

Field names are the flag names, so a field's documentation is its flag's --help.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """The initial model. `do_lower_case` is None unless given: the model's own files decide."""

    init_checkpoint: Optional[str] = None
    pretrained: Optional[str] = None
    hub_module_handle: Optional[str] = None
    bert_config_file: Optional[str] = None
    vocab_file: Optional[str] = None
    do_lower_case: Optional[bool] = None
    assignment_map: Optional[str] = None
    adaptation: str = "full"
    adapter_kind: Optional[str] = None
    adapter_size: int = 64
    adapter_init_stddev: float = 1e-2
    lora_rank: int = 8
    prefix_length: int = 20
    prefix_projection: int = 0
    phm_dim: int = 4
    phm_rank: int = 1
    prompt_length: int = 20
    adapter_drop: int = 0
    ia3_targets: Optional[Tuple[str, ...]] = None  # None: the paper's (key, value, ffn)
    top_k: int = 2
    train_layer_norms: Optional[bool] = None  # None: the strategy's default for the adapter kind
    stack_adapters: Optional[Tuple[str, ...]] = None  # NAME:PATH of frozen adapters under the new one
    fuse_adapters: Optional[Tuple[str, ...]] = None  # NAME:PATH of the adapters an AdapterFusion combines


@dataclasses.dataclass(frozen=True)
class TrainingOptions:
    """Training. `weight_decay` is None unless given: 0.01, or 0 with --l2sp (which replaces the pull toward 0)."""

    train_batch_size: int = 32
    learning_rate: float = 5e-5
    num_train_epochs: float = 3.0
    warmup_proportion: float = 0.1
    save_checkpoints_steps: int = 1000
    max_train_examples: Optional[int] = None
    seed: int = 0
    jit_compile: bool = False
    run_eagerly: bool = False
    batch_padding: str = "longest"  # data/pipeline.PADDINGS; the flag's default depends on jit_compile
    weight_decay: Optional[float] = None
    layerwise_lr_decay: float = 1.0
    lr_schedule: str = "linear"
    stlr_ratio: float = 32.0
    adam_epsilon: float = 1e-6
    adam_epsilon_mode: str = "keras"
    clip_norm: float = 1.0
    gradient_accumulation_steps: int = 1
    unfreezing: str = "none"
    unfreezing_interval: int = 0
    sequential_unfreezing_epochs: Tuple[float, float] = (1.0, 1.0)
    l2sp: float = 0.0
    ewc: float = 0.0
    ewc_examples: int = 64
    ewc_head_steps: int = 100
    aux_mlm_weight: float = 0.0
    eval_every_steps: int = 0
    eval_every_epoch: bool = False
    keep_best: Optional[str] = None
    early_stopping_patience: int = 0

    @property
    def evaluates_during_training(self) -> bool:
        return bool(self.eval_every_steps or self.eval_every_epoch)

    @property
    def decoupled_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return 0.0 if self.l2sp else 0.01


@dataclasses.dataclass(frozen=True)
class OutputOptions:
    output_dir: Optional[str] = None
    export_dir: Optional[str] = None
    export_version: Optional[int] = None
    serving_dtype: str = "float32"
    plot_training: bool = False


@dataclasses.dataclass(frozen=True)
class DistributionOptions:
    distribution_strategy: str = "default"
    num_gpus: Optional[int] = None
    num_cpu_devices: Optional[int] = None
    all_reduce_alg: Optional[str] = None
    tpu: Optional[str] = None

    @property
    def multi_replica(self) -> bool:
        return self.distribution_strategy not in ("default", "one_device")


@dataclasses.dataclass(frozen=True)
class _JobOptions:
    """What both scripts share: the groups above, the modes and the sequence length."""

    model: ModelOptions = ModelOptions()
    training: TrainingOptions = TrainingOptions()
    output: OutputOptions = OutputOptions()
    distribution: DistributionOptions = DistributionOptions()
    do_train: bool = False
    do_predict: bool = False
    do_export: bool = False
    max_seq_length: int = 128
    predict_batch_size: int = 8
    ignored_tpu_flags: Tuple[str, ...] = ()  # google-research/bert's TPU flags that were given (and are ignored)
    command_line: Tuple[str, ...] = ()  # the flags as given (--name=value), for the model card


@dataclasses.dataclass(frozen=True)
class ClassifierOptions(_JobOptions):
    task_name: Optional[str] = None
    data_dir: Optional[str] = None
    do_eval: bool = False
    eval_batch_size: int = 8
    inference_dtype: str = "float32"  # of --do_eval / --do_predict on the final model: float32 or int8
    train_file: Optional[str] = None
    dev_file: Optional[str] = None
    test_file: Optional[str] = None
    text_a_column: str = "0"
    text_b_column: Optional[str] = None
    label_column: str = "1"
    label_list: Optional[Tuple[str, ...]] = None
    delimiter: Optional[str] = None
    quotechar: Optional[str] = '"'
    skip_header: bool = True
    encoding_errors: str = "strict"
    empty_texts: str = "keep"
    features: str = "pooled"
    feature_head: str = "linear"
    teacher_probabilities: Optional[Tuple[str, ...]] = None
    distill_temperature: float = 2.0
    distill_alpha: float = 0.5
    student_layers: Optional[int] = None
    auxiliary_tasks: Optional[Tuple[str, ...]] = None
    task_sampling: str = "proportional"
    sampling_temperature: float = 2.0
    write_train_probabilities: bool = False
    export_tasks: Optional[Tuple[str, ...]] = None
    probe_layers: Optional[str] = None
    streaming: str = "auto"
    shuffle_buffer: int = 10000

    @property
    def needs_data(self) -> bool:
        return self.do_train or self.do_eval or self.do_predict


@dataclasses.dataclass(frozen=True)
class SquadOptions(_JobOptions):
    max_seq_length: int = 384
    train_file: Optional[str] = None
    predict_file: Optional[str] = None
    doc_stride: int = 128
    max_query_length: int = 64
    n_best_size: int = 20
    max_answer_length: int = 30
    verbose_logging: bool = False
    version_2_with_negative: bool = False
    null_score_diff_threshold: float = 0.0
    eval: bool = False
    find_null_threshold: bool = False
    inference_dtype: str = "float32"  # of --do_predict (and evaluation during training): float32 or int8


@dataclasses.dataclass(frozen=True)
class NerOptions(_JobOptions):
    """run_ner.py: token classification (NER, part-of-speech tags, chunking) on CoNLL / CoNLL-U files."""

    train_file: Optional[str] = None
    dev_file: Optional[str] = None
    test_file: Optional[str] = None
    do_eval: bool = False
    eval_batch_size: int = 32
    word_column: int = 0
    label_column: str = "-1"
    label_list: Optional[Tuple[str, ...]] = None
    label_all_tokens: bool = False
    probe_layers: Optional[str] = None
    inference_dtype: str = "float32"  # of --do_eval / --do_predict: float32 or int8


@dataclasses.dataclass(frozen=True)
class PretrainingOptions(_JobOptions):
    """run_pretraining.py: continued masked-LM pretraining on raw text (DAPT) or a task's own texts (TAPT)."""

    input_file: Optional[Tuple[str, ...]] = None
    eval_file: Optional[Tuple[str, ...]] = None
    task_name: Optional[str] = None
    data_dir: Optional[str] = None
    do_eval: bool = False
    eval_batch_size: int = 32
    masked_lm_prob: float = 0.15
    max_predictions_per_seq: int = 20
    whole_word_masking: bool = False
    dynamic_masking: bool = True
    next_sentence_prediction: bool = False
    short_seq_prob: float = 0.1
    head_warmup_steps: int = -1
    streaming: str = "auto"
    shuffle_buffer: int = 10000
    num_train_steps: Optional[int] = None
