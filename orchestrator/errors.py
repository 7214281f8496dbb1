"""The one exception type that means "the user asked for something that cannot work"."""


class OrchestratorError(Exception):
    """A problem with the user's input (config, data, plugin choice).

    The command line prints its message as one paragraph, without a traceback, and exits with
    status 2. Messages name the bad value, what was expected and what is available.
    """


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived during training. A BaseException, like KeyboardInterrupt, so
    that nothing catches it as an error; not a KeyboardInterrupt, so that Lightning re-raises it
    after its own clean-up instead of exiting."""

    def __init__(self, signum: int):
        import signal

        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


def closest(name: str, choices) -> str:
    """`" (did you mean 'x'?)"` for the nearest of `choices`, or an empty string."""
    import difflib

    match = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""
