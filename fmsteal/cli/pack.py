"""The `pack` and `unpack` commands: a warm pack of this cache for another server, and one unpacked into it."""

from __future__ import annotations

import argparse

__all__ = ["add_pack_parsers", "pack_main", "unpack_main"]


def add_pack_parsers(subparsers) -> None:
    """Register `pack` and `unpack` on the CLI's sub-command parsers."""
    pack = subparsers.add_parser("pack", help="pack this cache's datasets, features and victims for another server")
    pack.add_argument("out", help="the pack file to write (a tar), e.g. warm-pack.tar")
    unpack = subparsers.add_parser("unpack", help="unpack a warm pack into this cache (files it holds are kept)")
    unpack.add_argument("source", help="a pack file, or hf://<owner>/<repo>/<file> in a Hub dataset repository")


def pack_main(args: argparse.Namespace) -> int:
    from fmsteal.engine.cache import cache_root
    from fmsteal.engine.pack import write_pack

    manifest = write_pack(args.out)
    print(f"Packed {len(manifest['files']):,} files ({manifest['bytes'] / 2**20:,.0f} MB) of {cache_root()} into "
          f"{args.out}. Serve it with FMSTEAL_WARM_PACK={args.out}, or upload it to a Hub dataset repository and set "
          "FMSTEAL_WARM_PACK=hf://<owner>/<repo>/<file>.")
    return 0


def unpack_main(args: argparse.Namespace) -> int:
    from fmsteal.engine.cache import cache_root
    from fmsteal.engine.pack import install_pack

    summary = install_pack(args.source)
    print(f"Unpacked {summary['added']:,} files ({summary['bytes'] / 2**20:,.0f} MB) into {cache_root()} in "
          f"{summary['seconds']:.1f} s; {summary['kept']:,} it already held were kept.")
    return 0
