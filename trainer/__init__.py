"""Drivers and entry points: the online RL trainer, the offline trainer, generation and evaluation."""
