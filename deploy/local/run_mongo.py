"""Run the embedded MongoDB-wire server (SecantusDB) for development and tests.

    python deploy/local/run_mongo.py PORT DATA_DIR [TTL_SWEEP_SECONDS] [standalone]

``standalone``: no replica set, hence no oplog (and no transactions or change streams). Only the
activity benchmark's million-operation query run uses it: with its replica set the server caps the
oplog at 100,000 entries and past the cap every insert prunes it at a growing cost.

SecantusDB is GPL-2.0 and a development stand-in only: it runs as its own process and no Keyway
code imports it. Its CLI ignores the TTL sweep interval, hence this launcher.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

from secantus import SecantusDBServer


def main() -> None:
    port = int(sys.argv[1])
    data_dir = sys.argv[2]
    sweep = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0
    replica_set = None if sys.argv[4:] == ["standalone"] else "secantus"
    server = SecantusDBServer(
        host="127.0.0.1",
        port=port,
        storage_path=data_dir,
        ttl_sweep_seconds=sweep,
        replica_set_name=replica_set,
        sync_on_commit=os.environ.get("KEYWAY_EMBEDDED_DB_SYNC", "1") != "0",
    )

    def stop(_signum: int, _frame: FrameType | None) -> None:
        server.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.start()
    print(f"mongo ready on 127.0.0.1:{port}", flush=True)
    server.wait()


if __name__ == "__main__":
    main()
