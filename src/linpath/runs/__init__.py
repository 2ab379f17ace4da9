"""The run-folder workflows: a run's stages (stages.py: open, train, sweep, report), merging runs
trained apart (merge.py), instability children (spawn.py), checkpoint folders and OpenLTH runs as
run folders (import_dir.py, openlth.py), and a run's plane and trajectory (plane.py)."""
