"""A store writer meant to be killed with SIGKILL at a random point.

Run as `python crash_writer.py DATA_DIR SEED`. Before each operation it prints
`BEGIN op id seq`, after the store call returns `ACK op id seq`; a line is
flushed before the next step, so the parent knows which operations were
acknowledged and which one (at most) was in flight when the kill landed.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from console.models import GameNode
from console.store import Stores


def main(data_dir: str, seed: int) -> None:
    rng = random.Random(seed)
    stores = Stores.open(Path(data_dir))
    nodes = stores.nodes
    print("READY", flush=True)
    seq = max((int(n.labels.get("seq", "0")) for n in nodes.list()), default=0)
    while True:
        seq += 1
        ids = [n.id for n in nodes.list()]
        roll = rng.random()
        if not ids or roll < 0.3:
            op, id = "add", f"n{seq}"
        elif roll < 0.85:
            op, id = "update", rng.choice(ids)
        else:
            op, id = "delete", rng.choice(ids)
        print(f"BEGIN {op} {id} {seq}", flush=True)
        if op == "add":
            nodes.add(GameNode(id=id, name=f"node {id}", type="virtual", labels={"seq": str(seq)},
                               hardware={"blob": "x" * rng.randrange(10, 20000)}))
        elif op == "update":
            nodes.mutate(id, lambda n, s=seq: n.model_copy(update={"labels": {**n.labels, "seq": str(s)}}))
        else:
            nodes.delete(id)
        print(f"ACK {op} {id} {seq}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
