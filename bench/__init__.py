"""bench: fine-tune, retrieve, or just prompt? Measured on your own domain tasks.

The harness (this package) knows nothing about any particular task or strategy: tasks live in
`tasks/`, strategies in `strategies/`, and both register themselves on import.
"""

__version__ = "0.2.0"
