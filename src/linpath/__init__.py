"""linpath: neural-network optimization along linear paths in weight space."""

__version__ = "0.1.0"
