"""The sweep: settings, grids of x, one work item per (replicate, t), and the merged table."""
