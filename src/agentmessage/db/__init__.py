"""Engine, sessions, models and migrations. Dialect differences live here only."""
