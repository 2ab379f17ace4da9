"""Where and how the computation runs: device, precision, seeds, the torchrun world, versions."""
