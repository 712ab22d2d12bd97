"""Placeholder until this command group is written."""


def register(subparsers) -> None:  # noqa: ANN001
    return None
