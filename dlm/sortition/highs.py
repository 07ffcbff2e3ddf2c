"""A HiGHS model that prints nothing: the one place where sortition touches the process's stdout."""

from __future__ import annotations

import os
import sys
from typing import Any


def quiet_highs() -> Any:
    """A highspy model with logging off; its one-time banner goes to /dev/null, not our stdout.

    highspy prints its banner from the constructor, before any option can turn logging off, and
    it writes to file descriptor 1 from C, so `contextlib.redirect_stdout` cannot catch it.
    """
    import highspy

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    h.setOptionValue("output_flag", False)
    return h
