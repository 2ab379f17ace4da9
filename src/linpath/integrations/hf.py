"""KeepStepsCallback: a Hugging Face TrainerCallback keeping the paper's states (linpath.Keeper).

    trainer = transformers.Trainer(model, args, train_dataset=..., callbacks=[KeepStepsCallback("runs/bert")])

The step is the Trainer's global step (optimizer steps, after gradient accumulation); t = 0 is
kept at train begin, before the first update, and the final state at train end. Only the world
process zero writes. Needs transformers (and accelerate, which its Trainer needs):
pip install 'linpath[hf]'.
"""

from __future__ import annotations

import os

from linpath.train.keeper import Keeper

try:
    from transformers import TrainerCallback
except ImportError:
    raise ImportError("linpath.integrations.hf needs transformers: pip install 'linpath[hf]'") from None

# TrainingArguments that decide the trained weights (not output folders, logging or timestamps,
# which would change the spec's hash from one launch to the next)
TRAINING_FIELDS = (
    "learning_rate",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "max_grad_norm",
    "optim",
    "lr_scheduler_type",
    "warmup_steps",
    "warmup_ratio",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "num_train_epochs",
    "max_steps",
    "seed",
    "data_seed",
    "bf16",
    "fp16",
)


def training_hparams(args) -> dict:
    """The TrainingArguments of TRAINING_FIELDS that `args` has."""
    return {name: getattr(args, name) for name in TRAINING_FIELDS if hasattr(args, name)}


class KeepStepsCallback(TrainerCallback):
    """Keep the model's states at the paper's steps, or `keep`'s (see linpath.Keeper), in the
    run folder `run_dir`. `total_steps` defaults to the Trainer's max steps; `hparams` to the
    TrainingArguments that decide the weights (training_hparams). `optimizer=True` also keeps the
    optimizer's state (with the random generators', `rng=True`) for spawning."""

    def __init__(
        self,
        run_dir: str | os.PathLike,
        total_steps: int | None = None,
        keep="paper",
        *,
        replicate: int = 0,
        hparams: dict | None = None,
        optimizer: bool = False,
        rng: bool = False,
    ):
        self.run_dir, self.total_steps, self.keep = run_dir, total_steps, keep
        self.replicate, self.hparams = replicate, hparams
        self.optimizer, self.rng = optimizer, rng
        self.keeper: Keeper | None = None

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if not state.is_world_process_zero:
            return
        self.keeper = Keeper(
            self.run_dir,
            model,
            self.total_steps or state.max_steps,
            self.keep,
            replicate=self.replicate,
            hparams=self.hparams if self.hparams is not None else training_hparams(args),
            optimizer=optimizer if self.optimizer else None,
            rng=self.rng,
            start_step=state.global_step,
            kept_by="huggingface",
        )

    def on_step_end(self, args, state, control, **kwargs):
        if self.keeper is not None:
            self.keeper.step(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if self.keeper is not None:
            self.keeper.finish(state.global_step)
            self.keeper = None
