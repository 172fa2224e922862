"""Make an API key:

    python -m service.auth new-key --name mobile-app --scopes recommend,sessions [--rate-per-s 20 --burst 40]

prints the key once (give it to the client; it is not stored anywhere) and the JSON entry to add to
SEQREC_API_KEYS (a JSON list) or to the SEQREC_API_KEYS_FILE list. `python -m service.auth hash` prints the
digest of a key read from stdin (to configure an existing key).
"""

from __future__ import annotations

import argparse
import sys
from typing import cast

from service.auth.keys import SCOPES, Scope, entry_json, hash_key, new_key


def _scopes(text: str) -> list[Scope]:
    scopes = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise argparse.ArgumentTypeError(
            f"scopes are a comma-separated subset of {', '.join(SCOPES)}; got {text!r}"
        )
    return [cast(Scope, s) for s in scopes]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m service.auth", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    new = sub.add_parser("new-key", help="a fresh random key and its entry")
    new.add_argument("--name", required=True)
    new.add_argument("--scopes", type=_scopes, required=True, help=f"comma-separated: {','.join(SCOPES)}")
    new.add_argument(
        "--rate-per-s", type=float, default=None, help="this key's rate limit (default: the service's)"
    )
    new.add_argument("--burst", type=int, default=None)
    sub.add_parser("hash", help="the sha256 entry value of a key read from stdin")
    args = parser.parse_args(argv)
    if args.cmd == "hash":
        sys.stdout.write(hash_key(sys.stdin.read().strip()) + "\n")
        return
    raw, entry = new_key(args.name, args.scopes, args.rate_per_s, args.burst)
    sys.stdout.write(
        f"key (shown once; give it to the client, it is not stored):\n{raw}\n"
        f"entry for SEQREC_API_KEYS / SEQREC_API_KEYS_FILE:\n{entry_json(entry)}\n"
    )


if __name__ == "__main__":
    main()
