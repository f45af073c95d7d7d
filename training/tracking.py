"""Watch a long run live: optional experiment tracking with Weights & Biases (issue 16, item 6).

Off unless asked: with no project, `start` returns None and wandb is never imported, so the trainers
run without it installed. With one, the run's settings go to W&B as its config, every metrics row
(the same numbers as OUT/metrics.jsonl) at its step, and the plots at the end:

    pip install wandb && wandb login
    python fd.py --wandb my-project --out runs/fd      # the W&B run is named fd
    WANDB_MODE=offline python fd.py --wandb my-project --out runs/fd   # no network: written under
    wandb sync runs/fd/wandb/offline-run-*                             # runs/fd/wandb/, uploaded later
    python fd.py --resume runs/fd                       # continues the SAME W&B run (runs/fd/wandb_id.txt)

Tracking is a spectator: a failure to start it is one clear error before training begins (so a long
run is not launched blind), but a failure while logging only warns, once, and training goes on.
"""
import math
import numbers
import os
import sys

ID_FILE = "wandb_id.txt"  # in the run folder: a resumed run continues the W&B run named here


class TrackingError(RuntimeError):
    """Tracking could not start; the message says what to do."""


def start(project: str, out: str, config: dict, name: str = "", resume: bool = False) -> "Tracker | None":
    """A W&B run in `project` for the run folder `out` (its files under out/wandb/), or None when
    project is "". resume=True continues the W&B run whose id out/wandb_id.txt holds (a new one if
    none); a new run writes a new id there."""
    if not project:
        return None
    try:
        import wandb
    except ImportError:
        raise TrackingError(f"--wandb {project}: wandb is not installed: `pip install wandb`, "
                            f"or drop --wandb") from None
    os.makedirs(out, exist_ok=True)
    id_path = os.path.join(out, ID_FILE)
    run_id = None
    if resume and os.path.exists(id_path):
        with open(id_path) as f:
            run_id = f.read().strip() or None
    try:
        run = wandb.init(project=project, name=name or os.path.basename(os.path.normpath(out)), config=config,
                         dir=out, id=run_id, resume="allow" if run_id else None)
    except Exception as e:  # wandb raises several kinds (UsageError, CommError, timeouts); all mean the same here
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise TrackingError(f"--wandb {project}: W&B could not start ({first}): log in with `wandb login` "
                            f"(or set WANDB_API_KEY), or run without network with WANDB_MODE=offline and "
                            f"upload later with `wandb sync {out}/wandb/offline-run-*`") from None
    with open(id_path, "w") as f:  # a new run's id replaces an old one; a resumed run writes the same
        f.write(run.id + "\n")
    return Tracker(wandb, run)


class Tracker:
    """One W&B run. No method raises: a failure warns once on stderr and the run goes on untracked
    for that call."""

    def __init__(self, wandb, run):
        self.wandb, self.run, self.warned = wandb, run, False

    def log(self, row: dict, step: int):
        """One metrics row at its training step. Only finite numbers: None (a metric not measured this
        step), NaN/inf (a diverged loss, already counted in skipped_nonfinite) and text are left out,
        so a chart shows a gap rather than a spike or an error."""
        numbers_only = {k: v for k, v in row.items() if isinstance(v, numbers.Real) and math.isfinite(v)}
        self._call(lambda: self.run.log(numbers_only, step=step))

    def images(self, paths: dict, step: int | None = None):
        """Plot files {name: path.png} as images; a missing file is skipped (a plot that was not drawn)."""
        found = {name: path for name, path in paths.items() if os.path.isfile(path)}
        if found:
            self._call(lambda: self.run.log({k: self.wandb.Image(p) for k, p in found.items()}, step=step))

    def finish(self):
        self._call(self.run.finish)

    def _call(self, fn):
        try:
            fn()
        except Exception as e:
            if not self.warned:
                self.warned = True
                print(f"warning: W&B tracking failed ({type(e).__name__}: {e}); training goes on and metrics.jsonl "
                      f"in the run folder still has every row (this warning is shown once)", file=sys.stderr)
