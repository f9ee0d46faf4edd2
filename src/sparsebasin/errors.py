"""One exception type for every mistake a user can fix.

The CLI prints it as a single line (``error: ...``) and exits with status 2,
so a Snakemake log shows what to do instead of a traceback.
"""


class UserError(Exception):
    """Bad input: a file, a config key or an argument the user must fix."""


class TrainingDiverged(UserError):
    """The loss became NaN or inf; no final output was written."""


class UnsafeFile(UserError):
    """A file that asks to run code when loaded (not one this program wrote); nothing was run."""


def os_error_in(exc: BaseException | None) -> OSError | None:
    """The OSError behind ``exc`` (itself, or in its cause/context chain), if any.

    Libraries sometimes turn a full disk into another exception (matplotlib
    raises AttributeError after ENOSPC); the disk is still what to report.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
