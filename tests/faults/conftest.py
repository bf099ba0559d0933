"""The fault matrix (docs/reliability.md): faults injected in the real stack
(botocore's own event hooks, a real sshd's session killed, a real file system
filled), never by mocking trainbox's own code. The AWS cases share
tests/provision's moto fixtures (pvkit)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "provision"))
