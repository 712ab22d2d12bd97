"""Placeholder until this command group is written."""


def register(subparsers) -> None:  # noqa: ARG001
    return None
