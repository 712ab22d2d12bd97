"""The one exception type that carries a sentence for the user.

Anything raised as :class:`MsliError` is bad input (a file, an argument, a model folder): the CLI
prints its message on one line and exits non-zero, the app shows it with ``st.error``.
Any other exception is a bug and keeps its traceback.
"""


class MsliError(Exception):
    """Bad input. ``str(err)`` is one sentence naming the input, what is wrong, and the fix."""
