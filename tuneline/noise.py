"""Known library noise that several steps meet, silenced around the calls that emit it.

(Export and quantization noise, which only compression meets, is tasks/compress/noise.py.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def no_loading_bar() -> Iterator[None]:
    """transformers' "Loading weights" progress bar off inside the block (a local file loads in
    a blink; the bar was three lines of console noise per run)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()
