"""Command groups of the ``msli`` CLI; each module exposes ``register(subparsers)``."""
