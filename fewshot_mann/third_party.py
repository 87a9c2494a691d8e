"""learn2learn, imported once for the whole package without gym's notice.

learn2learn imports gym, and gym's `__init__` prints a four-line notice ("Gym has been
unmaintained since 2022 ...", from the `gym_notices` package) to stderr with a plain `print`,
not through `warnings`, so a warnings filter cannot hold it back. The import runs with stderr
captured; everything else written there meanwhile (warnings, errors) is passed on unchanged.
Every module of the package takes learn2learn from here; importing this module imports
learn2learn, so import it where learn2learn is needed (lazily where that is only sometimes).
"""

from __future__ import annotations

import contextlib
import io
import sys
from types import ModuleType


def _import_quietly() -> ModuleType:
    captured = io.StringIO()
    with contextlib.redirect_stderr(captured):
        import learn2learn
        import learn2learn.vision.models
    text = captured.getvalue()
    try:
        import gym
        from gym_notices.notices import notices

        notice = notices.get(gym.__version__)
    except Exception:  # gym or gym_notices absent or changed: nothing to take out
        notice = None
    if notice:
        text = text.replace(notice + "\n", "", 1)
    sys.stderr.write(text)
    return learn2learn


l2l = _import_quietly()
ConvBase = l2l.vision.models.ConvBase
OmniglotCNN = l2l.vision.models.OmniglotCNN

__all__ = ["ConvBase", "OmniglotCNN", "l2l"]
