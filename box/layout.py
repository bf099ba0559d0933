"""Every path trainbox uses on the box, in one place (docs/architecture.md, "The box's layout").

``BoxLayout(workdir)``: a relative workdir (the default ``trainbox``) is
relative to the login user's home, which is how the bootstrap and the shell
commands (run from ``$HOME``) use it; ``at_home(home)`` resolves it once to the
absolute layout the laptop hands to Python on the box. The file names inside
a run folder and inside the environment are here too, so Python modules and
templates (rendered with ``layout=``) spell each path once.
"""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_WORKDIR = "trainbox"  # relative to the login user's home

# Under the workdir.
CODE = "code"            # the pushed packages (model/), on the job's PYTHONPATH
DATA = "data"            # one folder per data set key
RUNS = "runs"            # one folder per run id
ENV_LINK = "env"         # a link to the current environment, envs/<spec>.<time>.<pid>
ENVS = "envs"            # one environment per build
TOOLS = "tools"          # uv, fetched by the bootstrap
BOOTSTRAP = "bootstrap.sh"
SETUP_LOCK = "setup.lock"
SETUP_LOG = "setup.log"
JUPYTER = "jupyter"      # nb's pid, port, token (0600), log, runtime files

# Markers.
READY_MARKER = "trainbox-ready"          # in an environment: "spec <id>" then versions; written last
DATA_COMPLETE = ".trainbox-complete"     # in a data set's folder: the fetch or synth finished

# In a run folder (templates/run.sh.j2 writes them; exit_code last).
RUN_SCRIPT = "run.sh"
RUN_PID = "pid"
RUN_LOG = "log"
RUN_EXIT_CODE = "exit_code"
RUN_STOPPED = "stopped"                  # `remote stop` was asked
RUN_OUT = "out"                          # what the model writes (model/runfiles.py names its files)


@dataclass(frozen=True)
class BoxLayout:
    """Where things live on the box, under one workdir (absolute, or relative to the home)."""

    workdir: str = DEFAULT_WORKDIR

    def at_home(self, home: str) -> "BoxLayout":
        """This layout with its workdir made absolute against the login's home."""
        return self if self.workdir.startswith("/") else BoxLayout(f"{home.rstrip('/')}/{self.workdir}")

    def _under(self, *parts: str) -> str:
        return "/".join((self.workdir, *parts))

    @property
    def code(self) -> str:
        return self._under(CODE)

    @property
    def data_root(self) -> str:
        return self._under(DATA)

    def data(self, key: str) -> str:
        return self._under(DATA, key)

    @property
    def runs(self) -> str:
        return self._under(RUNS)

    def run(self, run_id: str) -> str:
        return self._under(RUNS, run_id)

    @property
    def env_link(self) -> str:
        """trainbox's environment: the link a job resolves once (templates/run.sh.j2)."""
        return self._under(ENV_LINK)

    @property
    def envs(self) -> str:
        return self._under(ENVS)

    @property
    def env_python(self) -> str:
        return f"{self.env_link}/bin/python"

    @property
    def ready_marker(self) -> str:
        return f"{self.env_link}/{READY_MARKER}"

    @property
    def bootstrap(self) -> str:
        return self._under(BOOTSTRAP)

    @property
    def setup_lock(self) -> str:
        return self._under(SETUP_LOCK)

    @property
    def setup_log(self) -> str:
        return self._under(SETUP_LOG)

    @property
    def tools(self) -> str:
        return self._under(TOOLS)

    @property
    def jupyter(self) -> str:
        return self._under(JUPYTER)
