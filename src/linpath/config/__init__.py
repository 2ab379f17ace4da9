"""What a run is: spec dataclasses and their hash, the presets (one entry per setting), step
strings and the paper's kept steps, the learning-rate schedule."""
