"""The one exception type for mistakes in what the user gave us."""


class UserError(Exception):
  """Bad input (config, paths, checkpoints): reported as one line, no traceback.

  `main` catches it, prints `error: <message>` and exits with status 2. Raise it
  only where the message alone tells the user what to change.
  """


def brief(error: BaseException, limit: int = 160) -> str:
  """A short reason for an exception from a library (orbax and tensorstore
  put whole specs in their messages): the OS error if there is one, else
  the start of the first line."""
  import errno as errno_lib
  import os
  import re

  text = str(error)
  code = re.search(r"os_error_code='(\d+)'", text) or re.search(
      r"\[Errno (\d+)\]", text)
  if code:
    number = int(code.group(1))
    return f"{os.strerror(number)} ({errno_lib.errorcode.get(number, number)})"
  first = (text.splitlines() or [""])[0]
  for cut in (" See full TensorStore details", " [tensorstore_spec", " To enable it"):
    first = first.split(cut)[0]
  if len(first) > limit:
    first = first[:limit] + "..."
  return f"{type(error).__name__}: {first}"
