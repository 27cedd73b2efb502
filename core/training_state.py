"""Which tensors of a checkpoint are training state rather than the model.

Training checkpoints hold more than the model: optimizer moments (Adam's
exp_avg and exp_avg_sq, SGD's momentum buffers, Adagrad's sums ...), learning
rate scheduler and trainer state, and EMA copies of the weights. Counting them
as parameters triples an Adam checkpoint's "model size". They are recognised
by the path of container keys that torch.optim, Lightning, timm, torch_ema and
hand-written training loops use, never by value, so a file's order or sharding
cannot change the answer. Real model weights never sit under these names.
"""

from __future__ import annotations

import re

# Container keys that only optimizers and schedulers use: training state wherever they appear.
OPTIMIZER_CONTAINERS = frozenset({
    "optimizer", "optimizers", "optimizer_state", "optimizer_states", "optimizer_state_dict", "optimizer_state_dicts",
    "optimizer_dict", "optimizer_sd", "base_optimizer_state", "optim", "optim_state", "optim_states",
    "optim_state_dict", "opt_state", "opt_state_dict", "param_groups", "lr_scheduler", "lr_schedulers",
    "lr_scheduler_state", "scheduler_state", "scheduler_state_dict", "grad_scaler", "amp_scaler",
})
# Keys that mean trainer state only at the top of the file (a model may have a "scheduler" module deeper; "opt"
# and "scaler" are left out: OPT models and feature scalers use them, and their optimizer state is caught below).
TOP_CONTAINERS = frozenset({
    "scheduler", "schedulers", "callbacks", "loops", "trainer_state", "training_state", "hyper_parameters", "hparams",
})
# EMA / averaged copies of the weights, as torch_ema, timm, Lightning callbacks and diffusers store them.
EMA_CONTAINERS = frozenset({
    "ema", "model_ema", "ema_model", "ema_state_dict", "state_dict_ema", "ema_state", "ema_params", "ema_weights",
    "model_ema_state_dict", "ema_net", "shadow", "shadow_params", "averaged_params", "swa_model", "swa_state_dict",
})
# Per-parameter optimizer state that no model layer is named after (Adam/AdamW/Lion/Adamax/Adan/Adafactor,
# SGD, RMSprop, Adadelta).
DISTINCTIVE_MOMENTS = frozenset({
    "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer", "exp_avg_sq_row", "exp_avg_sq_col", "exp_inf",
    "square_avg", "acc_delta", "grad_avg", "exp_avg_diff", "neg_pre_grad", "exp_hessian_diag",
})
# Generic leaves, optimizer state only inside "state.<param id>." (Adagrad sum, step counters, ASGD, NAdam, Rprop).
GENERIC_MOMENTS = frozenset({
    "step", "sum", "ax", "eta", "mu", "mu_product", "prev", "step_size", "rms", "hessian", "lr",
})
# One-segment trainer scalars at the top of a checkpoint.
TRAINER_SCALARS = frozenset({
    "epoch", "step", "global_step", "iteration", "iter", "loss", "best_loss", "best_acc", "best_metric",
    "best_score", "rng_state", "cuda_rng_state", "torch_rng_state", "lr", "learning_rate",
})
_PARAM_ID = re.compile(r"[0-9]{1,12}")


def is_training_state(name: str) -> bool:
    """True when the tensor's key path says an optimizer, scheduler, trainer or EMA copy keeps it."""
    parts = name.lower().split(".")
    if len(parts) == 1:
        return parts[0] in TRAINER_SCALARS
    if parts[0] in TOP_CONTAINERS or parts[0] in EMA_CONTAINERS:
        return True
    if len(parts) > 2 and parts[1] in EMA_CONTAINERS and parts[1] != "shadow":  # "module.ema.<weights>"
        return True
    leaf = parts[-1]
    if leaf in DISTINCTIVE_MOMENTS:
        return True
    for i, part in enumerate(parts[:-1]):
        if part in OPTIMIZER_CONTAINERS:
            return True
        # torch.optim's layout under any key: "<anything>.state.<param id>.<moment>"
        if part == "state" and i + 2 == len(parts) - 1 and _PARAM_ID.fullmatch(parts[i + 1]) \
                and leaf in GENERIC_MOMENTS:
            return True
    return False


def summary_lines(by_kind: dict[str, int], parameters: int) -> list[str]:
    """The `info` line that keeps a training checkpoint's model size apart from its optimizer state."""
    from core.numbers import human_count

    state = by_kind.get("state", 0)
    if not state:
        return []
    return [f"Model       {human_count(parameters)} parameters; the file also holds {human_count(state)} values "
            "of training state (optimizer moments, scheduler, EMA copies), not counted as parameters"]
