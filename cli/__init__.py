"""The command lines: the one place that composes trainbox's two halves.

provision/ (the AWS half) and remote/ (the SSH half) are libraries that never
import each other; the commands that need both live here: `up` renders the
bootstrap with remote.setup, `down` and `image create` pull unfetched results
with remote.results, `nb` finds the latest run's project with remote.orchestrate,
and `remote --start` (and a run followed across an interruption) asks
provision.lifecycle. `python -m provision` and `remote` (and `python -m remote`)
are launchers into provision_main and remote_main.

    provision side: cloud (which AWS a command talks to), box_life (up, down,
    image), box_verbs (state, start, stop, ip, ssh, nb, ls, aliases,
    ssh-config, sandbox-notice), provision_main (the parser, main).
    remote side: remote_reach (the box a command reaches, shared), remote_run
    (run, train, --resume, following a run to its end), remote_watch (logs,
    status, stop, pull, runs, compare, tb, report), remote_setup (setup,
    doctor, data), remote_args (the parser), remote_main (main).
"""
