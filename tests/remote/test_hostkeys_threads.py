"""Host keys pinned from several threads at once (a multi-node run connects to
every node in parallel, pinning each on first use): every pin is kept."""

from concurrent.futures import ThreadPoolExecutor

from common import hostkeys


def test_pins_made_at_once_are_all_kept():
    ports = range(40000, 40032)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda p: hostkeys.pin("127.0.0.1", p, [f"ssh-ed25519 KEY{p}"]), ports))
    assert all(hostkeys.pinned("127.0.0.1", p) == [f"ssh-ed25519 KEY{p}"] for p in ports)
