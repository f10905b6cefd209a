"""The one exception type for mistakes in what the user gave us."""


class UserError(Exception):
  """Bad input (config, paths, checkpoints): reported as one line, no traceback.

  `main` catches it, prints `error: <message>` and exits with status 2. Raise it
  only where the message alone tells the user what to change.
  """
