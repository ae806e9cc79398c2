"""Which weights train, when and how: adapter configs, strategies, adapter-only files, multi-task switching and
composition (several tasks' adaptations on one base in one model: BatchSplit, Parallel), LoRA
and (IA)^3 merging; optimizers (BERT's AdamW, per-variable rates), schedules, unfreezing, regularizers (L2-SP,
EWC), multitask (sampler, trainer, auxiliary masked-LM), distillation and ensembling (import those modules
directly)."""

# Imported for their Keras registrations too: a saved model compiled with these optimizers, schedules or losses
# loads after `import tfx_transfer`.
from tfx_transfer.adaptation import distillation, optimizers, schedules  # noqa: F401
from tfx_transfer.adaptation.composition import BatchSplit, Parallel, average_adaptations
from tfx_transfer.adaptation.files import load_adaptation, load_peft_adapter, read_adaptation, save_adaptation
from tfx_transfer.adaptation.strategies import STRATEGIES, ParameterReport, apply_strategy, parameter_report
from tfx_transfer.adaptation.surgery import ablate_adapters, merge_adaptation, merge_lora
from tfx_transfer.adaptation.switcher import AdaptationSwitcher
from tfx_transfer.adaptation.members import member_arrays
from tfx_transfer.layers.adapter_config import AdapterComposition, AdapterConfig, is_adaptation_variable

__all__ = [
    "AdapterConfig", "is_adaptation_variable", "apply_strategy", "parameter_report", "ParameterReport",
    "STRATEGIES", "save_adaptation", "load_adaptation", "read_adaptation", "AdaptationSwitcher", "merge_adaptation",
    "merge_lora", "ablate_adapters", "load_peft_adapter", "BatchSplit", "Parallel",
    "average_adaptations", "AdapterComposition", "member_arrays",
]
