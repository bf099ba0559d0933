"""Every path trainbox uses on the box, in one place (docs/architecture.md, "The box's layout").

``BoxLayout(workdir)``: a relative workdir (the default ``trainbox``) is
relative to the login user's home, which is how the bootstrap and the shell
commands (run from ``$HOME``) use it; ``at_home(home)`` resolves it once to the
absolute layout the laptop hands to Python on the box. The file names inside
a run folder and inside the environment are here too, so Python modules and
templates (rendered with ``layout=``) spell each path once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

DEFAULT_WORKDIR = "trainbox"  # relative to the login user's home

# Under the workdir.
CODE = "code"  # the pushed packages (model/), on the job's PYTHONPATH
DATA = "data"  # one folder per data set key
RUNS = "runs"  # one folder per run id
ENV_LINK = "env"  # a link to trainbox's current environment, envs/<spec>.<time>.<pid>
#                          (a project's with requirements: env-<key>, see env_name)
PROJECTS = "projects"  # one pushed project per key (`remote run`), kept between runs
REQUIREMENTS = "requirements"  # a project's requirements file when it lies outside the project
ENVS = "envs"  # one environment per build
TOOLS = "tools"  # uv, fetched by the bootstrap
BOOTSTRAP = "bootstrap.sh"
SETUP_LOCK = "setup.lock"
SETUP_LOG = "setup.log"
JUPYTER = "jupyter"  # nb's pid, port, token (0600), log, runtime files
TENSORBOARD = "tensorboard"  # `remote tb`'s servers: one folder per set of runs (pid, pid-start, port, log)
TB_PORT = "port"  # in a server's folder: the port it listens on (127.0.0.1)

# Markers.
READY_MARKER = "trainbox-ready"  # in an environment: "spec <id>" then versions; written last
DATA_COMPLETE = ".trainbox-complete"  # in a data set's folder: the fetch or synth finished

# In a run folder (templates/run.sh.j2 writes them; exit_code last).
RUN_SCRIPT = "run.sh"
RUN_PID = "pid"
RUN_LOG = "log"
RUN_EXIT_CODE = "exit_code"
RUN_STOPPED = "stopped"  # `remote stop` was asked
RUN_OUT = "out"  # what the model writes (model/run_files.py names its files)
RUN_BOOT_ID = "boot_id"  # the boot it was started in (the agent resumes older ones)
RUN_RESUMED = "resumed"  # how many times it was started again
RUN_SAVE_REQUEST = "save-now"  # the agent asks the job to save (model/save_request.py)
RUN_SAVED = "saved"  # the model's answer beside it (model/save_request.py)
RUN_BIN = ".trainbox-bin"  # `python` for a job without an environment
# Spot interruptions (box/agent.py, issue 13).
RUN_EVENTS = "events"  # the agent's JSON lines: spot-notice, stopping, resumed, left-stopped
RUNS_RESUMING = ".resuming"  # in the runs folder while the agent resumes runs: the guard keeps the box
# The agent itself, installed by the user-data outside the workdir (root's, run as the login user).
AGENT_DIR = "/opt/trainbox"  # box/agent.py and box/layout.py, as the package box/
AGENT_ENV_FILE = "/etc/trainbox/agent.env"  # optional: AWS_EC2_METADATA_SERVICE_ENDPOINT (the sandbox's stand-in)
AGENT_UNIT = "trainbox-agent.service"
# A --recover box's runs in S3 (issue 25). provision/boxstore.py makes the bucket, the box's
# prefix ``boxes/<box>/`` and the instance role that reaches that prefix only; the box's agent
# (box/keep.py) writes and reads what is below, the laptop reads it (`remote pull`, `down`).
#   <prefix>runs/<run_id>/run.json   the run folder's RUN_SPEC (what a new instance needs to resume)
#   <prefix>runs/<run_id>/run.sh     the run's own script (absolute paths: every instance of the
#                                    group has the same login user and workdir)
#   <prefix>runs/<run_id>/files/<f>  the run folder's own files: log, events, resumed, exit_code, stopped,
#                                    pid, pid-start, boot_id (a restored run is one an earlier boot cut off)
#   <prefix>runs/<run_id>/out/<path> $TRAINBOX_OUT, mirrored within one agent poll of every save
#   <prefix>runs/<run_id>/code       the sha256 of the run's code archive below (its name in code/)
#   <prefix>runs/<run_id>/state.json {"exit_code": int|null, "stopped": bool, "instance": "i-...",
#                                    "at": unix time}: written last at every mirror
#   <prefix>code/<sha256>.tar.gz     a pushed project (the run's project_dir), once per content
#   <prefix>data/<key>.tar           a run's data set (pushed, or fetched: URL, S3, Kaggle), once per key
#   <prefix>bootstrap.sh             the environment's first-boot bootstrap, put by `up --recover`: the
#                                    agent of each new instance runs it (no room in the user-data)
STORE_ENV_FILE = "/etc/trainbox/store.env"  # written by the user-data of a --recover box:
#                                             TRAINBOX_STORE=s3://<bucket>/<prefix>, AWS_REGION
STORE_RUNS = "runs"
STORE_RUN_SCRIPT = RUN_SCRIPT
STORE_RUN_FILES = "files"
STORE_RUN_OUT = RUN_OUT
STORE_RUN_STATE = "state.json"
STORE_RUN_CODE = "code"
STORE_CODE = "code"
STORE_DATA = "data"
STORE_BOOTSTRAP = BOOTSTRAP
# In a run folder: what the laptop knew when it started the run, for a new instance to resume it:
# {"run_id", "project_dir", "data_dir": str|null, "data": {"key", "source": "local"|"url"|"s3",
#  "fetch": box/fetch.py's plan for a URL|null}|null, "env_link": str|null,
#  "backend", "command": [...], "out": the out folder's name in the run folder}
RUN_SPEC = "run.json"
# Next to a job's pid file: the start time of that process when it wrote it
# (templates/run.sh.j2, the Jupyter start script). A pid alone may be reused
# by another program by the time it is read back; the pair is not.
RUN_PID_START = "pid-start"
# The same in the box's bash: the start time of pid $1 (field 22 of
# /proc/PID/stat, clock ticks since boot; `ps -o lstart=` where there is no /proc).
START_TIME_SH = (
    'trainbox_start_time() { local s; if s=$(cat "/proc/$1/stat" 2>/dev/null); then s=${s##*) }; '
    'set -- $s; echo "${20}"; else ps -o lstart= -p "$1" | sed \'s/^ *//\'; fi; }'
)


DEFAULT_BACKEND = "tensorflow"  # Keras's backend; another one has environments of its own


def env_name(key: str | None = None, backend: str | None = None) -> str:
    """The name of an environment's link under the workdir: trainbox's own, or a
    project's (key), for Keras's default backend or another one (``env-jax``)."""
    name = ENV_LINK if key is None else f"{ENV_LINK}-{key}"
    return name if backend in (None, DEFAULT_BACKEND) else f"{name}-{backend}"


@dataclass(frozen=True)
class BoxLayout:
    """Where things live on the box, under one workdir (absolute, or relative to
    the home); ``env`` says which environment the env paths are of."""

    workdir: str = DEFAULT_WORKDIR
    env: str = ENV_LINK

    def at_home(self, home: str) -> BoxLayout:
        """This layout with its workdir made absolute against the login's home."""
        if self.workdir.startswith("/"):
            return self
        return dataclasses.replace(self, workdir=f"{home.rstrip('/')}/{self.workdir}")

    def with_env(self, key: str | None, backend: str | None = None) -> BoxLayout:
        """The same layout, its env paths those of a project's environment (key) or trainbox's (None), for backend."""
        return dataclasses.replace(self, env=env_name(key, backend))

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
    def resuming_marker(self) -> str:
        return self._under(RUNS, RUNS_RESUMING)

    def project(self, key: str) -> str:
        """A pushed project (`remote run`): its own folder, kept between runs (pushes are incremental)."""
        return self._under(PROJECTS, key)

    def requirements(self, key: str) -> str:
        """Where a project's requirements file goes when it is not in the pushed project."""
        return self._under(REQUIREMENTS, f"{key}.txt")

    @property
    def env_link(self) -> str:
        """The environment's link, which a job resolves once (templates/run.sh.j2)."""
        return self._under(self.env)

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
        """The stored bootstrap (user-data runs trainbox's own); a project's environment has its own."""
        return self._under(BOOTSTRAP if self.env == ENV_LINK else f"bootstrap-{self.env}.sh")

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

    @property
    def tensorboards(self) -> str:
        """Where `remote tb` keeps its servers' folders."""
        return self._under(TENSORBOARD)

    def tensorboard(self, key: str) -> str:
        """One TensorBoard server's folder: ``all`` (every run of the box) or a set of runs' key."""
        return self._under(TENSORBOARD, key)
