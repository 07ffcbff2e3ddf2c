"""Training progress as a compact line every N steps, in place of the trainer's raw `{'loss': …}` dicts.

In a notebook the line is one output updated in place (the executed notebook keeps the final line);
under `run_all.py` each line is also appended to the file `DLM_PROGRESS` names, which the runner
prints to the terminal; elsewhere (the CLI) it goes to stderr.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PROGRESS_ENV = "DLM_PROGRESS"
UPDATES_PER_RUN = 4  # lines per training run: every quarter of its steps


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def make_callback(name: str, every: int | None = None) -> Any:
    """A transformers TrainerCallback reporting `name: step s/N · loss x · t s` every `every` steps."""
    from transformers import TrainerCallback

    class StepProgress(TrainerCallback):
        def __init__(self) -> None:
            self.t0, self.loss, self.handle, self.every, self.last = 0.0, None, None, every, -1

        def on_train_begin(self, args, state, control, **kwargs):
            self.t0 = time.monotonic()
            self.every = self.every or max(1, state.max_steps // UPDATES_PER_RUN)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % self.every == 0 or state.global_step == state.max_steps:
                self.emit(state)

        def on_train_end(self, args, state, control, **kwargs):
            self.emit(state)

        def emit(self, state) -> None:
            if state.global_step == self.last or not state.is_local_process_zero:
                return
            self.last = state.global_step
            loss = f" · loss {self.loss:.3f}" if self.loss is not None else ""
            report(f"{name}: step {state.global_step}/{state.max_steps}{loss} · {time.monotonic() - self.t0:.0f} s",
                   self)

    return StepProgress()


def report(line: str, owner: Any = None) -> None:
    """Show one progress line: in place in a notebook, appended to DLM_PROGRESS, else on stderr."""
    target = os.environ.get(PROGRESS_ENV)
    if target:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    if _in_kernel():
        from IPython.display import Pretty, display

        if owner is not None and owner.handle is not None:
            owner.handle.update(Pretty(line))
        else:
            handle = display(Pretty(line), display_id=True)
            if owner is not None:
                owner.handle = handle
    elif not target:
        print(line, file=sys.stderr, flush=True)


def attach(trainer: Any, name: str) -> None:
    """Replace the trainer's log printing (raw dicts) and its bar with one progress line every few steps."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(make_callback(name))


@contextmanager
def relayed(path: Path, log: Callable[..., Any], prefix: str = "    ") -> Iterator[None]:
    """Set DLM_PROGRESS to `path` for child processes (papermill's kernel) and print its new lines via `log`."""
    path.unlink(missing_ok=True)
    saved = os.environ.get(PROGRESS_ENV)
    os.environ[PROGRESS_ENV] = str(path)
    stop = threading.Event()

    def follow() -> None:
        offset = 0
        while True:
            done = stop.is_set()
            if path.exists():
                with open(path, encoding="utf-8") as fh:
                    fh.seek(offset)
                    for line in fh:
                        if line.endswith("\n"):
                            log(prefix + line.rstrip("\n"), flush=True)
                            offset += len(line.encode("utf-8"))
            if done:
                return
            stop.wait(1.0)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        if saved is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = saved
        path.unlink(missing_ok=True)
