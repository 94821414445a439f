"""The common base of the project's errors: problems a user can fix, reported by `main` as a
message (what, where, what is valid or what to do) and a non-zero exit, not a traceback.

Each concern raises its own subclass: `ConfigError` (config values), `data.DataError`
(datasets, splits, images), `models.convert.BackboneError` (CLIP weight directories),
`checkpoint.CheckpointError` (Orbax training checkpoints), `workdir.WorkdirError` (run
directories), `loop.DivergedError` (non-finite training).
"""


class UserError(Exception):
    """Something the user can fix; its message is the whole report."""


class ConfigError(UserError, ValueError):
    """A config value that is not valid; the message names the field and the valid values."""


class Stopped(Exception):
    """A run stopped by a signal after saving what it had: not an error of the user's; the
    command exits with `STOPPED_STATUS` and says how to resume."""


STOPPED_STATUS = 75  # EX_TEMPFAIL: try again (the same command resumes)
