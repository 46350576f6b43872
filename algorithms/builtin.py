"""Built-in algorithms (filled in by the algorithms issue)."""
