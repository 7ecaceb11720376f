"""The sync engine: pull busy blocks, push copies (engine.py), and the per-profile lock (lock.py)."""
