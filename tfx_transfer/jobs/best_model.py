"""Evaluation during training: when to evaluate, the best weights by a chosen metric, and early stopping.

    schedule = evaluation_schedule(evaluate, "eval_accuracy", options.training, checkpoint_dir(output_dir))
    trainer.train(..., evaluation=schedule)      # evaluates, keeps the best, may stop early
    schedule.restore_best(model)                 # the best weights, for final/; returns what task.json says

References: Model Garden's best-checkpoint exporter (`BestCheckpointExporter`: a metric, a higher/lower rule, the
best checkpoint kept beside the latest) and Hugging Face's `load_best_model_at_end` / `metric_for_best_model` /
`EarlyStoppingCallback(early_stopping_patience)`. The tracker's state (best value and step, evaluations since the
best, the history) travels in every training checkpoint, so a run resumed in the middle of it reproduces the
uninterrupted run's choices; an early stop is recorded too, so re-running a finished command does not train on.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable, Dict, List, Optional

from absl import logging

from tfx_transfer.jobs.options import TrainingOptions
from tfx_transfer.jobs.training_state import read_variables, write_variables

LOWER_IS_BETTER = ("loss",)  # metrics whose name ends with one of these are minimised


def lower_is_better(metric: str) -> bool:
    return metric.endswith(LOWER_IS_BETTER)


class BestModel:
    """The best evaluation so far and its weights (in `checkpoint_dir/best/`).

    Args:
        checkpoint_dir: the run's checkpoint directory. metric: the key of the evaluation results to compare
            (e.g. "eval_accuracy"; "*loss" metrics are minimised, the others maximised).
        patience: stop after this many evaluations without improvement (0: never stop early).
        write: False on a non-chief worker (it tracks, the chief writes).
    """

    def __init__(self, checkpoint_dir: str, metric: str, patience: int = 0, write: bool = True):
        self.directory = os.path.join(checkpoint_dir, "best")
        self.metric = metric
        self.patience = patience
        self.write = write
        self.best_value: Optional[float] = None
        self.best_step: Optional[int] = None
        self.since_best = 0
        self.stopped_early = False
        self.history: List[Dict] = []  # {"step": s, metric: value, ...} per evaluation

    def _better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best_value is None:
            return True
        return value < self.best_value if lower_is_better(self.metric) else value > self.best_value

    def record(self, model, step: int, results: Dict[str, float]) -> bool:
        """Takes the evaluation at `step`; saves the weights when it is the best so far. Returns True when training
        should stop (patience exhausted)."""
        if self.metric not in results:
            raise KeyError(f"--keep_best={self.metric}: the evaluation reports {', '.join(sorted(results))}.")
        value = float(results[self.metric])
        self.history.append({"step": int(step), **{k: float(v) for k, v in results.items()}})
        if self._better(value):
            self.best_value, self.best_step, self.since_best = value, int(step), 0
            if self.write:
                write_variables(self.directory, model.variables, {"step": int(step), "metric": self.metric,
                                                                  "value": value})
            logging.info("Step %d: %s = %.5g, the best so far (kept in %s).", step, self.metric, value,
                         self.directory)
        else:
            self.since_best += 1
            logging.info("Step %d: %s = %.5g; the best is %.5g at step %d (%d evaluation(s) without improvement%s).",
                         step, self.metric, value, self.best_value, self.best_step, self.since_best,
                         f" of {self.patience}" if self.patience else "")
        if self.patience and self.since_best >= self.patience:
            self.stopped_early = True
            logging.info("Early stopping at step %d: no improvement of %s in %d evaluations.", step, self.metric,
                         self.patience)
        return self.stopped_early

    def evaluated(self, step: int) -> bool:
        """Whether an evaluation at `step` is in the history."""
        return any(entry["step"] == int(step) for entry in self.history)

    def restore(self, model) -> bool:
        """Puts the best weights into `model`. Returns False when no evaluation was recorded."""
        if self.best_step is None:
            return False
        info = read_variables(self.directory, model.variables)
        if info.get("step") != self.best_step:
            raise ValueError(f"{self.directory} holds step {info.get('step')}, but the run's best is step "
                             f"{self.best_step}; delete {os.path.dirname(self.directory)} to start over.")
        return True

    def summary(self) -> Optional[dict]:
        """What final/task.json and the model card say about the choice (None before any evaluation)."""
        if self.best_step is None:
            return None
        return {"metric": self.metric, "value": self.best_value, "step": self.best_step,
                "evaluations": len(self.history), "stopped_early": self.stopped_early}

    def state(self) -> dict:
        return {"best_value": self.best_value, "best_step": self.best_step, "since_best": self.since_best,
                "stopped_early": self.stopped_early, "history": self.history, "metric": self.metric}

    def load_state(self, state: Optional[dict]):
        if not state:
            return
        if state.get("metric") != self.metric:
            raise ValueError(f"The checkpoints were written with --keep_best={state.get('metric')}, this run keeps "
                             f"{self.metric}; use the interrupted run's flags or a new --output_dir.")
        self.best_value, self.best_step = state["best_value"], state["best_step"]
        self.since_best, self.stopped_early = state["since_best"], state["stopped_early"]
        self.history = list(state["history"])


@dataclasses.dataclass
class EvaluationSchedule:
    """When `trainer.train` evaluates: every `every_steps` global steps and/or at each epoch's end (and so at the end
    of training). `evaluate(model)` returns {metric: value}; `best` keeps the best and decides early stopping."""

    evaluate: Callable[[object], Dict[str, float]]
    best: BestModel
    every_steps: int = 0
    every_epoch: bool = False

    def next_stop(self, step: int, epoch_end: int) -> int:
        """The step training runs to before the next evaluation (at most `epoch_end`)."""
        if self.every_steps:
            return min(epoch_end, (step // self.every_steps + 1) * self.every_steps)
        return epoch_end

    def due(self, step: int, steps_per_epoch: int, total: int) -> bool:
        """Evaluation points: every `every_steps`, each epoch's end with `every_epoch`, and the end of training."""
        if step == total:
            return True
        if self.every_steps and step % self.every_steps == 0:
            return True
        return self.every_epoch and step % steps_per_epoch == 0

    def restore_best(self, model) -> Optional[dict]:
        """Puts the best weights into `model` (for final/) and returns `BestModel.summary()`; None when nothing was
        evaluated."""
        if not self.best.restore(model):
            return None
        summary = self.best.summary()
        logging.info("final/ is the best model of %d evaluations: %s = %.5g at step %d%s.", summary["evaluations"],
                     summary["metric"], summary["value"], summary["step"],
                     " (training stopped early)" if summary["stopped_early"] else "")
        return summary


def evaluation_schedule(evaluate, metric: str, training: TrainingOptions, checkpoint_dir: str,
                        write: bool = True) -> EvaluationSchedule:
    """The schedule --eval_every_steps / --eval_every_epoch / --early_stopping_patience ask for, keeping the best
    by `metric` (the validated --keep_best) in `checkpoint_dir/best/`; `write` False on non-chief workers."""
    return EvaluationSchedule(evaluate, BestModel(checkpoint_dir, metric, training.early_stopping_patience, write),
                              training.eval_every_steps, training.eval_every_epoch)
