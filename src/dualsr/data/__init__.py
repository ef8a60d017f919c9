"""Data loading and preprocessing utilities for dualsr."""
