"""The evaluator: interpolated networks evaluated in place on preloaded data, with stem mixing,
BatchNorm folding and recompute, evaluation subsets and their standard errors."""
