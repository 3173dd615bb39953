"""How many parts of a growing upload to send at once, on the suite's SeaweedFS (issue 11).

    .venv/bin/python -m benchmarks.s3_parts [--mib 1024] [--rounds 3]

One `weed mini` (tests/s3_support.py) and one file, already complete, sent as a growing
upload (`S3Client.growing_upload`, 16 MiB parts) with 1, 2 and 3 parts in flight, and as
`put_file` (parts one at a time), round after round with the order reversed every other
round. Prints MB/s per round and the medians. Not CI.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE.parent)]

from s3_support import new_bucket  # noqa: E402
from s3_support import running_seaweedfs  # noqa: E402

from pywharf.clients import s3_multipart  # noqa: E402
from pywharf.clients.s3 import S3Client  # noqa: E402

MIB = 1 << 20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.mib * MIB
    rates: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="pywharf-s3-parts-") as work:
        path = Path(work) / "file.bin"
        with path.open("wb") as file:
            for _ in range(args.mib):
                file.write(os.urandom(MIB))
        with running_seaweedfs(Path(work) / "weed") as server:
            bucket = new_bucket(server)
            client = S3Client(bucket.location(), server.credentials, part_bytes=16 * MIB)
            ways = ["1", "2", "3", "put_file"]
            for round_ in range(args.rounds):
                for way in ways if round_ % 2 == 0 else ways[::-1]:
                    started = time.monotonic()
                    key = f"{way}-{round_}"
                    if way == "put_file":
                        client.put_file(key, path, sha256="0" * 64)
                    else:
                        s3_multipart.EARLY_PARTS_IN_FLIGHT = int(way)
                        upload = client.growing_upload(key, path, size)
                        upload.ended(size)
                        upload.complete({})
                    rate = size / (time.monotonic() - started) / 1e6
                    rates.setdefault(way, []).append(rate)
                    print(f"round {round_ + 1}, {way}: {rate:.0f} MB/s", flush=True)
    print(f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    for way, values in rates.items():
        shown = " / ".join(f"{v:.0f}" for v in values)
        label = "put_file, one at a time" if way == "put_file" else f"{way} in flight"
        print(f"{label:>24}: {shown} MB/s, median {statistics.median(values):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
