"""Files on disk: atomic writes, CSV tables, safe tensor loading, the folder lock, RunDir.

The bottom layer: it imports nothing of linpath but errors, so every stage can use it.
"""
