"""Dual regression compression (DRC): channel number search, channel pruning, fine-tuning."""
