"""The webhook run starter as a process of its own: `python -m release_orchestrator.webhooks.starter`.

With WEBHOOK_STARTER=separate (a setting) the api-server only checks and records deliveries, and this process
creates their runs: creating a DAG run costs several times the CPU of answering a delivery, and in the
api-server's own process it slowed the answers down under load. Run one or more next to the api-server, with
the same Airflow configuration (metadata DB); several share the work, each row is claimed by one at a time.
It polls the record of deliveries (an indexed query) every --poll-seconds, since the api-server cannot wake a
process it does not know; SIGTERM or SIGINT stop it after the delivery in hand.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

log = logging.getLogger("release_orchestrator.webhooks.starter")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m release_orchestrator.webhooks.starter", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=0.5,
        help="how often to look for recorded deliveries whose runs are not created yet (default 0.5)",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="lower this process's CPU priority by this much (0-19), so on a shared host the api-server's "
        "answers come first (default 0)",
    )
    parser.add_argument(
        "--heartbeat-file",
        type=Path,
        help="touch this file every round (at least every --poll-seconds while idle, every batch of 20 "
        "deliveries while busy), for a health check that it is not stuck",
    )
    args = parser.parse_args(argv)
    if args.poll_seconds <= 0:
        parser.error("--poll-seconds must be above 0")
    if not 0 <= args.nice <= 19:
        parser.error("--nice must be 0 to 19")
    if args.nice:
        os.nice(args.nice)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from release_orchestrator.webhooks.deliveries import DeliveryStore, Starter
    from release_orchestrator.webhooks.runs import AirflowRuns

    starter = Starter(DeliveryStore(), AirflowRuns(), poll_seconds=args.poll_seconds, autostart=False)
    if args.heartbeat_file:
        starter.heartbeat = args.heartbeat_file.touch
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: starter.stop(timeout=0))
    log.info("webhook starter running in process %d, looking every %.1f s", os.getpid(), args.poll_seconds)
    starter.run()
    log.info("webhook starter stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
