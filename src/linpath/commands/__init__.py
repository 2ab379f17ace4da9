"""What only the command line needs: `path` on any two files, `spawn`, `import-openlth`."""
