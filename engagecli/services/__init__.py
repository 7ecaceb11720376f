"""Services: what commands call. Each takes an Env and plain arguments and returns data (no printing)."""
