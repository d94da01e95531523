"""Study recipes, one module per axis: `python -m tfkd.recipes.<name> --helpfull`."""
