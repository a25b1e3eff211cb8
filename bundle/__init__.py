"""The engine: environment config, synthesis, packaging, terraform runner, checks."""
