"""free_port: loopback ports that outgoing connections and parallel test workers cannot take."""

import subprocess
import sys

from include.localenv.environment import REPO_ROOT, _ephemeral_port_floor, free_port, port_is_free


def test_ports_come_from_below_the_ephemeral_range_and_are_free():
    ports = {free_port() for _ in range(5)}
    assert len(ports) == 5
    for port in ports:
        assert 15000 <= port < _ephemeral_port_floor()
        assert port_is_free(port)


def test_a_port_handed_out_here_is_never_handed_out_to_another_process():
    ours = {free_port() for _ in range(20)}
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            "from include.localenv.environment import free_port\n"
            "print(' '.join(str(free_port()) for _ in range(2000)))",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    theirs = {int(port) for port in other.stdout.split()}
    assert len(theirs) == 2000
    assert not ours & theirs
