"""KeepSteps: a PyTorch Lightning Callback keeping the paper's states (linpath.Keeper).

    trainer = lightning.pytorch.Trainer(max_steps=3000, callbacks=[KeepSteps("runs/my-net")])

The step is the trainer's global step (optimizer steps); t = 0 is kept at train start, before
the first update, and the final state at train end. Only the global-zero rank writes. Needs
`lightning` (pip install 'linpath[lightning]'); `pytorch_lightning` is used where it is the one
installed.
"""

from __future__ import annotations

import os

from linpath.train.keeper import Keeper

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # the older package name
    try:
        from pytorch_lightning.callbacks import Callback
    except ImportError:
        raise ImportError(
            "linpath.integrations.lightning needs PyTorch Lightning: pip install 'linpath[lightning]'"
        ) from None


class KeepSteps(Callback):
    """Keep the LightningModule's states (or its `module`, e.g. "net") at the paper's steps, or
    `keep`'s (see linpath.Keeper), in the run folder `run_dir`. `total_steps` defaults to the
    trainer's max_steps (else its estimated optimizer steps); `hparams` to the module's saved
    hyper-parameters (save_hyperparameters). `optimizer=True` also keeps the first optimizer's
    state (with the random generators', `rng=True`) for spawning."""

    def __init__(
        self,
        run_dir: str | os.PathLike,
        total_steps: int | None = None,
        keep="paper",
        *,
        replicate: int = 0,
        hparams: dict | None = None,
        module: str | None = None,
        optimizer: bool = False,
        rng: bool = False,
    ):
        super().__init__()
        self.run_dir, self.total_steps, self.keep = run_dir, total_steps, keep
        self.replicate, self.hparams, self.module = replicate, hparams, module
        self.optimizer, self.rng = optimizer, rng
        self.keeper: Keeper | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        total = self.total_steps or (
            trainer.max_steps if trainer.max_steps > 0 else int(trainer.estimated_stepping_batches)
        )
        model = pl_module.get_submodule(self.module) if self.module else pl_module
        hparams = self.hparams if self.hparams is not None else dict(getattr(pl_module, "hparams", {}) or {})
        self.keeper = Keeper(
            self.run_dir,
            model,
            total,
            self.keep,
            replicate=self.replicate,
            hparams=hparams,
            optimizer=trainer.optimizers[0] if self.optimizer and trainer.optimizers else None,
            rng=self.rng,
            start_step=trainer.global_step,
            kept_by="lightning",
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.keeper is not None:
            self.keeper.step(trainer.global_step)  # the same step again under gradient accumulation: a no-op

    def on_train_end(self, trainer, pl_module) -> None:
        if self.keeper is not None:
            self.keeper.finish(trainer.global_step)
            self.keeper = None

    def on_exception(self, trainer, pl_module, exception) -> None:
        if self.keeper is not None:
            self.keeper.close()  # the kept states stay; no DONE mark
            self.keeper = None
