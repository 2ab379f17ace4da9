"""Keeping the paper's states from the trainers researchers use, as thin adapters over
linpath.Keeper (train/keeper.py): `linpath.integrations.lightning.KeepSteps` (a PyTorch
Lightning Callback) and `linpath.integrations.hf.KeepStepsCallback` (a Hugging Face
TrainerCallback). Each imports its framework only when it is imported itself (the `lightning`
and `hf` extras); `import linpath` never does."""
