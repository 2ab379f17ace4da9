"""Rendering results for people: report.md."""
