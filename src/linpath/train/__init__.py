"""Training a replicate: the loop (restore, step, hooks at kept steps and epoch ends) and its log."""
