"""google-research/bert's optimisation as Keras configuration: AdamW + warmup/linear decay + clipping.

    optimizer = create_optimizer(5e-5, num_train_steps=250, warmup_steps=25)

- `AdamW` (`FusedAdamW`: TensorFlow's fused Adam kernel) with weight decay 0.01 decoupled from the gradient (Loshchilov & Hutter; BERT's AdamWeightDecay: the
  decay is lr x wd x w, not an L2 term in the loss), epsilon 1e-6, no decay on LayerNorm parameters and biases.
- Gradients clipped at global norm 1.0, as in pre-training.
- `WarmupLinearDecay`: the learning rate google-research/bert uses (linear warmup, then linear decay to 0); other
  schedules (ULMFiT's slanted triangular, constant, Hugging Face's linear) in `adaptation.schedules`.
- Per-variable learning rates (`PerVariableRates`, `LayerwiseAdamW`): discriminative fine-tuning and the
  freezing gates that gradual unfreezing flips while training (`adaptation.unfreezing`).
"""

from __future__ import annotations

import keras
import numpy as np

from tfx_transfer.adaptation.schedules import build_schedule
from tfx_transfer.encoders.bert_encoder import find_encoder

NO_DECAY = ("bias", "gamma", "beta")  # Keras variable names of biases and LayerNorm parameters


@keras.saving.register_keras_serializable(package="tfx_transfer")
class FusedAdamW(keras.optimizers.AdamW):
    """Keras AdamW whose Adam update runs as TensorFlow's fused `ResourceApplyAdam` kernel.

    Same formula as `keras.optimizers.Adam.update_step` (alpha = lr sqrt(1 - b2^t) / (1 - b1^t); epsilon added to
    sqrt(v)), one pass over each variable and its two slots instead of about eight: ~10% faster full fine-tuning
    steps for MiniLM on this CPU (bench/). Weight decay, clipping and schedules are Keras's own.

    Args:
        epsilon_mode: where epsilon enters the update. "keras" (Keras and TensorFlow's Adam, Kingma & Ba's
            "epsilon hat"): w -= lr_t m / (sqrt(v) + eps), so relative to the bias-corrected sqrt(v_hat) the
            effective epsilon is eps / sqrt(1 - b2^t), 32x larger at step 1 and still 2x at step 250.
            "pytorch" (Kingma & Ba's Algorithm 1, `torch.optim.AdamW`, Hugging Face): w -= lr m_hat /
            (sqrt(v_hat) + eps). The two differ where gradient entries are not large against that effective
            epsilon: needed to reproduce a PyTorch run step for step; at eps 1e-8 a whole MiniLM SQuAD run gave the
            same EM/F1 either way (bench/results/squad_diagnosis.md).
        **kwargs: `keras.optimizers.AdamW` arguments.
    """

    EPSILON_MODES = ("keras", "pytorch")

    def __init__(self, epsilon_mode="keras", **kwargs):
        if epsilon_mode not in self.EPSILON_MODES:
            raise ValueError(f"epsilon_mode={epsilon_mode!r}: use one of {self.EPSILON_MODES}.")
        if epsilon_mode == "pytorch" and kwargs.get("amsgrad"):
            raise ValueError("epsilon_mode='pytorch' is not implemented with amsgrad=True.")
        super().__init__(**kwargs)
        self.epsilon_mode = epsilon_mode

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # The step's scalars (t, b1^t, b2^t, epsilon) are made once per apply and shared by every variable's
        # update: made per variable they were ~9 ops each, a third of the traced apply (3,122 ops for MiniLM's
        # 105 variables), i.e. tracing and Grappler time in the first step, and graph-executor work in every step.
        self._step_scalars = {}
        try:
            super()._backend_update_step(grads, trainable_variables, learning_rate)
        finally:
            self._step_scalars = None

    def _adam_scalars(self, dtype):
        """(beta1, beta2, b1^t, b2^t, epsilon) in `dtype` for this apply's step t = iterations + 1."""
        import tensorflow as tf

        cache = getattr(self, "_step_scalars", None)
        if cache is not None and dtype in cache:
            return cache[dtype]
        local_step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        beta_2_power = tf.pow(beta_2, local_step)
        epsilon = tf.cast(self.epsilon, dtype)
        if self.epsilon_mode == "pytorch":  # eps after the bias correction == eps_hat = eps sqrt(1 - b2^t) before
            epsilon = epsilon * tf.sqrt(1.0 - beta_2_power)
        scalars = (beta_1, beta_2, tf.pow(beta_1, local_step), beta_2_power, epsilon)
        if cache is not None:
            cache[dtype] = scalars
        return scalars

    def update_step(self, gradient, variable, learning_rate):
        import tensorflow as tf

        if not isinstance(variable, tf.Variable) or self.amsgrad:  # another backend or AMSGrad: Keras's path
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        dtype = variable.dtype
        if isinstance(gradient, tf.IndexedSlices):
            gradient = tf.convert_to_tensor(gradient)
        beta_1, beta_2, beta_1_power, beta_2_power, epsilon = self._adam_scalars(dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=m.value.handle, v=v.value.handle, beta1_power=beta_1_power,
            beta2_power=beta_2_power, lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=epsilon, grad=tf.cast(gradient, dtype), use_locking=False)

    def _clip_gradients(self, grads):
        """Keras's clipping at the global norm, with the same result and less memory traffic (per step, MiniLM:
        0.17-0.19 -> 0.12-0.13 s per apply on this CPU, with the weight decay and step scalars below):

        - each squared norm is one fused pass (`L2Loss`), where Keras writes the squares out and sums them;
        - a sparse gradient (the word embeddings' `IndexedSlices`, a few hundred rows of a 30k-row table) stays
          sparse: duplicate rows are summed first, so its norm is the dense gradient's, and only its rows are
          scaled, where Keras densifies the 11.7M-entry table here to scale it;
        - nothing is multiplied when the norm is within the limit (Keras multiplies by clip x (1 / clip), exactly
          1.0 for the usual clip 1.0). A NaN or infinite norm still makes every gradient value NaN, as Keras does
          (a sparse gradient's absent rows stay absent, where Keras's densified 0 x NaN makes them NaN too);
        - under a strategy with several replicas the norm is that of the step's gradient (the replicas' sum), as
          on one device; Keras clips each replica's part by its own norm before summing them.
        """
        import tensorflow as tf

        clip = self.global_clipnorm
        if self.clipnorm or self.clipvalue or not clip or clip <= 0:
            return super()._clip_gradients(grads)
        present = [i for i, g in enumerate(grads) if g is not None]
        if not present:
            return grads
        if self._reduces_before_clipping():
            # Under a multi-replica strategy Keras clips each replica's own gradient by its own norm, then sums
            # them: not the global norm of the step's gradient. Here the sum comes first (the one all-reduce of
            # the step, moved: `_all_reduce_sum_gradients` then passes the gradients through).
            reduced = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM,
                                                                      [grads[i] for i in present])
            grads = list(grads)
            for i, g in zip(present, reduced):
                grads[i] = g
        grads = [_summed_slices(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
        squares = [2.0 * tf.nn.l2_loss(tf.cast(_values(grads[i]), "float32")) for i in present]
        norm = tf.sqrt(tf.add_n(squares))
        clip = tf.cast(clip, norm.dtype)
        scale = clip / tf.maximum(norm, clip) + (norm - norm)  # NaN / inf norm: NaN scale, as Keras

        def scaled():
            return [_scale(grads[i], scale) for i in present]

        kept = tf.cond(tf.logical_not(norm <= clip), scaled, lambda: [grads[i] for i in present])
        out = list(grads)
        for i, g in zip(present, kept):
            out[i] = g
        return out

    def _reduces_before_clipping(self) -> bool:
        """Whether `_clip_gradients` sums the replicas' gradients itself: global-norm clipping by this class under
        a strategy with several replicas in sync (decided the same way in both places, at trace time)."""
        import tensorflow as tf

        clip = self.global_clipnorm
        context = tf.distribute.get_replica_context()
        return bool(clip and clip > 0 and not self.clipnorm and not self.clipvalue and context is not None
                    and context.num_replicas_in_sync > 1)

    def _all_reduce_sum_gradients(self, grads_and_vars):
        if self._reduces_before_clipping():
            return list(grads_and_vars)  # summed in _clip_gradients
        return super()._all_reduce_sum_gradients(grads_and_vars)

    def _apply_weight_decay(self, variables):
        """Decoupled weight decay, w -= w x (lr x wd), as Keras's AdamW, with lr x wd computed once per apply
        (Keras evaluates the schedule again for every variable: ~8 ops each) and one full-size multiply per
        variable instead of two (Keras: (w x wd) x lr)."""
        if self.weight_decay is not None:
            apply_decoupled_decay(self, variables)

    def get_config(self):
        config = super().get_config()
        config["epsilon_mode"] = self.epsilon_mode
        return config


def _summed_slices(slices):
    """The same gradient as `IndexedSlices` with each row once (duplicates summed, first-seen order)."""
    import tensorflow as tf

    rows, positions = tf.unique(slices.indices)
    values = tf.math.unsorted_segment_sum(slices.values, positions, tf.shape(rows)[0])
    return tf.IndexedSlices(values, rows, slices.dense_shape)


def _values(gradient):
    import tensorflow as tf

    return gradient.values if isinstance(gradient, tf.IndexedSlices) else gradient


def _scale(gradient, scale):
    import tensorflow as tf

    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(gradient.values * tf.cast(scale, gradient.values.dtype), gradient.indices,
                                gradient.dense_shape)
    return gradient * tf.cast(scale, gradient.dtype)


def apply_decoupled_decay(optimizer, variables, rate_of=None):
    """w -= w x (lr x wd) [x rate_of(w)] for each of `variables` that `optimizer._use_weight_decay`, the
    tf.distribute way (each variable updated where it lives). lr x wd is computed once per dtype and apply (Keras's
    AdamW evaluates the schedule again for every variable); `rate_of` gives a per-variable scalar in its dtype."""
    import tensorflow as tf

    decays = {}

    def decay_of(variable):
        dtype = variable.dtype
        if dtype not in decays:
            decays[dtype] = tf.cast(optimizer.learning_rate, dtype) * tf.cast(optimizer.weight_decay, dtype)
        return decays[dtype] if rate_of is None else decays[dtype] * rate_of(variable)

    def apply_decay(distribution, variables):
        def decay(variable):
            if optimizer._use_weight_decay(variable):
                variable.assign_sub(variable * decay_of(variable))

        for variable in variables:
            variable = variable.value if isinstance(variable, keras.Variable) else variable
            distribution.extended.update(variable, decay, group=False)

    tf.__internal__.distribute.interim.maybe_merge_call(apply_decay, optimizer._distribution_strategy, variables)


def create_optimizer(learning_rate, num_train_steps, warmup_steps=0, weight_decay=0.01, epsilon=1e-6,
                     global_clipnorm=1.0, exclude_from_weight_decay=NO_DECAY, layerwise_lr_decay=1.0, model=None,
                     schedule="linear", stlr_ratio=32.0, gradient_accumulation_steps=None, per_variable_rates=False,
                     epsilon_mode="keras"):
    """AdamW with BERT's conventions and a schedule (see the module docstring).

    Args:
        learning_rate: the peak learning rate.
        num_train_steps, warmup_steps: optimizer updates (after gradient accumulation).
        schedule: one of `schedules.SCHEDULES` ("linear" = google-research/bert).
        global_clipnorm: clip the global gradient norm (None or 0: no clipping).
        layerwise_lr_decay: < 1 (needs `model`): discriminative learning rates, lr x decay**depth (`layer_depths`).
        gradient_accumulation_steps: >= 2 averages that many batches' gradients per update (Keras's own).
        per_variable_rates: use `LayerwiseAdamW` even without layer-wise decay, so per-variable rates can be changed
            while training without retracing (gradual unfreezing: `adaptation.unfreezing`).
        epsilon_mode: "keras" or "pytorch" (Hugging Face's), see `FusedAdamW`.
    """
    kwargs = dict(learning_rate=build_schedule(schedule, learning_rate, num_train_steps, warmup_steps, stlr_ratio),
                  weight_decay=weight_decay, beta_1=0.9, beta_2=0.999, epsilon=epsilon,
                  global_clipnorm=global_clipnorm or None, epsilon_mode=epsilon_mode,
                  gradient_accumulation_steps=gradient_accumulation_steps if (gradient_accumulation_steps or 1) > 1
                  else None)
    if not 0.0 < layerwise_lr_decay <= 1.0:
        raise ValueError(f"layerwise_lr_decay={layerwise_lr_decay} must be in (0, 1].")
    if layerwise_lr_decay != 1.0 or per_variable_rates:
        if model is None:
            raise ValueError("Per-variable learning rates need the model, to know each variable's layer.")
        optimizer = LayerwiseAdamW(layerwise_multipliers(model, layerwise_lr_decay), **kwargs)
    else:
        optimizer = FusedAdamW(**kwargs)
    if weight_decay and exclude_from_weight_decay:
        optimizer.exclude_from_weight_decay(var_names=list(exclude_from_weight_decay))
    return optimizer


def layerwise_multipliers(model, decay: float) -> dict:
    """{variable path: decay**depth} for every weight of `model` (a task model or an encoder)."""
    num_layers = find_encoder(model).bert_config.num_hidden_layers
    return {p: decay ** d for p, d in layer_depths([v.path for v in model.weights], num_layers).items()}


def layer_depths(paths, num_layers: int):
    """Depth from the top of each variable path: head and pooler 0, transformer layer i (0-based) num_layers - i,
    embeddings num_layers + 1 (discriminative fine-tuning: the further from the output, the smaller the lr).
    Adapter and LoRA variables inside a layer get that layer's depth."""
    import re

    depths = {}
    for path in paths:
        match = re.match(r"(?:.*/)?transformer_layer_(\d+)/", path)
        if match:
            depths[path] = num_layers - int(match.group(1))
        elif path.startswith("embeddings/"):
            depths[path] = num_layers + 1
        else:
            depths[path] = 0
    return depths


class PerVariableRates:
    """Mixin for any Keras optimizer class: a learning-rate multiplier per variable, changeable while training.

        class MySGD(PerVariableRates, keras.optimizers.SGD): pass
        optimizer = MySGD({"classifier/kernel": 1.0, "embeddings/...": 0.1}, learning_rate=1e-2)

    The multipliers live in one optimizer variable (`rates`, float32 [num_trainable_variables]), so
    `set_rates({path: value})` takes effect at the next step without retracing the compiled train step. A
    variable whose rate is 0 is frozen: its gradient is zeroed before clipping and accumulation (it does not count
    in the global norm, its Adam moments do not move) and the update and decoupled weight decay are scaled by 0,
    so it stays bit-identical. The learning rate given to `update_step` (and the weight decay's lr) is multiplied
    by the rate, which is what discriminative fine-tuning needs with any schedule (Howard & Ruder 2018).

    Args:
        lr_multipliers: {variable path: multiplier}; paths not listed use 1.0.
    """

    def __init__(self, lr_multipliers=None, **kwargs):
        super().__init__(**kwargs)
        self.lr_multipliers = {str(k): float(v) for k, v in dict(lr_multipliers or {}).items()}
        self.rates = None
        self.rate_paths = []

    def build(self, var_list):
        super().build(var_list)
        self.rate_paths = [v.path for v in var_list]
        values = np.asarray([self.lr_multipliers.get(p, 1.0) for p in self.rate_paths], np.float32)
        # An initializer, not an assign: Keras may build the optimizer inside a stateless scope, where an assign
        # after creation is dropped.
        self.rates = self.add_variable((len(var_list),), initializer=lambda shape, dtype=None: values,
                                       dtype="float32", name="lr_rates")

    def set_rates(self, rates: dict):
        """Sets the multipliers of the given variable paths (others keep theirs); the optimizer must be built."""
        if self.rates is None:
            raise ValueError("set_rates: the optimizer is not built yet (compile the model and build it first).")
        unknown = sorted(set(rates) - set(self.rate_paths))
        if unknown:
            raise ValueError(f"set_rates: not variables this optimizer trains: {unknown[:5]}")
        values = np.asarray(self.rates.numpy() if hasattr(self.rates, "numpy") else self.rates)
        values = values.copy()
        for index, path in enumerate(self.rate_paths):
            if path in rates:
                values[index] = rates[path]
        self.rates.assign(values)

    def current_rates(self) -> dict:
        return dict(zip(self.rate_paths, np.asarray(self.rates).tolist())) if self.rates is not None else {}

    def _rate(self, variable):
        import tensorflow as tf

        return tf.gather(tf.convert_to_tensor(self.rates), self._get_variable_index(variable))

    def _backend_apply_gradients(self, grads, trainable_variables):
        import tensorflow as tf

        gated = []
        for gradient, variable in zip(grads, trainable_variables):
            gate = tf.cast(self._rate(variable) > 0, gradient.dtype)
            if isinstance(gradient, tf.IndexedSlices):
                gated.append(tf.IndexedSlices(gradient.values * gate, gradient.indices, gradient.dense_shape))
            else:
                gated.append(gradient * gate)
        return super()._backend_apply_gradients(gated, trainable_variables)

    def update_step(self, gradient, variable, learning_rate):
        import tensorflow as tf

        return super().update_step(gradient, variable,
                                   learning_rate * tf.cast(self._rate(variable), learning_rate.dtype)
                                   if hasattr(learning_rate, "dtype") else learning_rate * self._rate(variable))

    def _apply_weight_decay(self, variables):
        import tensorflow as tf

        if self.weight_decay is not None:
            apply_decoupled_decay(self, variables, rate_of=lambda v: tf.cast(self._rate(v), v.dtype))

    def get_config(self):
        config = super().get_config()
        config["lr_multipliers"] = self.lr_multipliers
        return config


@keras.saving.register_keras_serializable(package="tfx_transfer")
class LayerwiseAdamW(PerVariableRates, FusedAdamW):
    """`FusedAdamW` with per-variable learning rates (`PerVariableRates`): discriminative fine-tuning (Howard &
    Ruder 2018; ELECTRA's layer-wise decay: depth d from the top trains at lr x decay**d, see `layer_depths`) and
    the freezing gates of gradual unfreezing. Works with any learning-rate schedule.

    Args:
        lr_multipliers: {variable path: multiplier}; paths not listed use 1.0.
        **kwargs: AdamW arguments.
    """

    def __init__(self, lr_multipliers=None, **kwargs):
        super().__init__(lr_multipliers=lr_multipliers, **kwargs)
