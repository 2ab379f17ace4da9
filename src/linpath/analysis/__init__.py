"""The science: path metrics, curves per sweep setting, the paper's figures, the verdicts."""
