"""The per-socket call runtime."""
