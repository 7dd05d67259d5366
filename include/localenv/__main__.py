"""`python -m include.localenv demo|up` (what `make demo` and `make up` run)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time


def _raise_interrupt(signum, frame):  # SIGTERM ends the environment as Ctrl-C does
    raise KeyboardInterrupt


def up() -> int:
    from include.localenv.environment import LocalEnvironment
    from release_orchestrator.settings import pipelines_dirs

    # The specs of $RELEASE_ORCHESTRATOR_PIPELINES_DIR when set (try your own), else the example's.
    env = LocalEnvironment(pipelines_dir=os.pathsep.join(pipelines_dirs()))
    with env:
        print(
            f"\nAirflow UI: {env.airflow_url}  (login admin / {env.users['admin']}; reviewer qa-lead / "
            f"{env.users['qa-lead']})\nRelease console: {env.airflow_url}/releases/\n"
            f"Sandbox AWS: {env.sandbox_url}\nProcess logs: {env.log_dir}\n"
            f"Pipeline specs: {env.pipelines_dir}\nCtrl-C stops everything.",
            flush=True,
        )
        while True:
            env.check_alive()
            time.sleep(2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.localenv")
    parser.add_argument("command", choices=["demo", "up"])
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    # Ctrl-C must stop everything even when started from a shell that ignores SIGINT in background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from include.localenv.environment import LocalEnvironmentError

    try:
        if args.command == "up":
            return up()
        from include.localenv.demo import main as demo

        return demo()
    except KeyboardInterrupt:
        print("\ninterrupted: every process started here has been stopped", file=sys.stderr)
        return 130
    except LocalEnvironmentError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
