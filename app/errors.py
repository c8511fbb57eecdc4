"""The problems a person can fix (a bad clip, prompt, backbone, data set, Hub repository, server...): the CLI
prints their message in one line and the UI shows it to the visitor; anything else is a bug and is reported as one."""
from __future__ import annotations

from .backbone import BackboneError
from .data import DataError
from .encoder.audio import AudioError
from .hub import HubError
from .perf.process import ServerError
from .prompting import PromptError

USER_ERRORS = (AudioError, BackboneError, DataError, HubError, PromptError, ServerError, FileNotFoundError, ValueError)
