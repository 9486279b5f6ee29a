"""Iterative jobs: one program state that evolves, checkpointed and resumed exactly."""
