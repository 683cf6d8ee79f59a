"""``edge-sdk keygen``, ``edge-sdk bundle``, ``edge-sdk verify``: signed model bundles (``edge_sdk.fleet``)."""

from __future__ import annotations

import argparse
from typing import Any

from edge_sdk.cli.base import Command, emit_json, format_table, human_bytes


def add_trusted_key_argument(parser: argparse.ArgumentParser) -> None:
    """``--trusted-key PATH.pub`` for verbs that load a model: a bundle is verified against it, and with it (or
    ``EDGE_SDK_TRUSTED_KEYS``) a plain unsigned model is refused."""
    parser.add_argument("--trusted-key", action="append", metavar="PATH.pub",
                        help="accept only models signed by this key (repeatable; default $EDGE_SDK_TRUSTED_KEYS); "
                             "needed to run a .edgebundle")  # fmt: skip


def signed_model_path(args: argparse.Namespace, path: Any) -> Any:
    """The model file to use for ``path``: a bundle's after verification and extraction (cached), a plain file
    as is unless trusted keys are set (then it must be signed). Cheap and import-free without keys or bundle."""
    from edge_sdk.loader import trusted_path

    return trusted_path(path, getattr(args, "trusted_key", None))


class KeygenCommand(Command):
    name = "keygen"
    help = "write a new Ed25519 signing key to PATH (0600) and its public key to PATH.pub"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("path", help="where to write the private key; the public key goes to PATH.pub")

    def run(self, args: argparse.Namespace) -> int:
        from edge_sdk.fleet.keys import generate_keypair, key_id, load_public_key

        private, public = generate_keypair(args.path)
        kid = key_id(load_public_key(public))
        if args.json:
            emit_json({"private_key": str(private), "public_key": str(public), "key_id": kid})
            return 0
        print(f"private key  {private}  (keep it secret: it signs bundles)")
        print(f"public key   {public}  (give it to devices: --pub, EDGE_SDK_TRUSTED_KEYS)")
        print(f"key id       {kid}")
        return 0


def _summary(manifest: Any, path: Any) -> dict[str, Any]:
    from pathlib import Path

    v = manifest.validation or {}
    return {
        "bundle": str(path),
        "size_bytes": Path(path).stat().st_size,
        **manifest.to_dict(),
        "passed": v.get("passed"),
    }


def _print(manifest: Any, path: Any, title: str) -> None:
    from pathlib import Path

    v = manifest.validation or {}
    print(f"{title:<12} {path}  ({human_bytes(Path(path).stat().st_size)})")
    print(f"{'version':<12} {manifest.version}")
    print(f"{'key id':<12} {manifest.key_id}")
    print(f"{'created':<12} {manifest.created}")
    print(f"{'model':<12} {manifest.model_file}  (task: {manifest.metadata.get('task') or 'not stored'})")
    if v:
        figures = ", ".join(
            f"{m.get('name')}: cosine {m.get('cosine'):.4f}"
            + (f", top-1 {m['top1_agreement']:.1%}" if m.get("top1_agreement") is not None else "")
            for m in v.get("metrics") or []
            if isinstance(m, dict) and isinstance(m.get("cosine"), (int, float))
        )
        state = "passed" if v.get("passed") else "FAILED"
        print(
            f"{'validation':<12} {v.get('target')} {v.get('precision')} {state}" + (f" ({figures})" if figures else "")
        )
    else:
        print(f"{'validation':<12} none recorded (a model file without its conversion record)")
    print()
    print(format_table(["file", "sha256"], [[n, d[:16] + "..."] for n, d in sorted(manifest.files.items())]))


class BundleCommand(Command):
    name = "bundle"
    help = "pack a model file or a conversion output folder into a signed .edgebundle (Ed25519)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("src", metavar="OUT_DIR_OR_MODEL", help="a model file, or a folder edge-sdk convert wrote")
        parser.add_argument("-o", "--output", required=True, metavar="BUNDLE", help="the bundle to write")
        parser.add_argument("--key", required=True, metavar="KEY", help="the private key (edge-sdk keygen KEY)")
        parser.add_argument("--version", dest="bundle_version", metavar="V",
                            help="the version devices report (default: model name + sha256 prefix)")  # fmt: skip
        parser.add_argument("--artifact", metavar="NAME",
                            help="from a folder: the artifact to load on devices (default: the first that passed "
                                 "validation); every artifact is packed")  # fmt: skip

    def run(self, args: argparse.Namespace) -> int:
        from edge_sdk.fleet.bundle import build_bundle

        manifest = build_bundle(args.src, args.output, args.key, version=args.bundle_version, artifact=args.artifact)
        if args.json:
            emit_json(_summary(manifest, args.output))
        else:
            _print(manifest, args.output, "wrote")
        return 0


class VerifyCommand(Command):
    name = "verify"
    help = "check a .edgebundle's signature against trusted public keys and every file's sha256 (exit 0 when valid)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("bundle", help="the .edgebundle to check")
        parser.add_argument("--pub", action="append", metavar="PATH.pub",
                            help="a trusted public key (repeatable; a folder means its *.pub; "
                                 "default: $EDGE_SDK_TRUSTED_KEYS)")  # fmt: skip

    def run(self, args: argparse.Namespace) -> int:
        from edge_sdk.fleet.bundle import verify_bundle

        manifest = verify_bundle(args.bundle, args.pub)
        if args.json:
            emit_json({"valid": True, **_summary(manifest, args.bundle)})
        else:
            _print(manifest, args.bundle, "valid")
        return 0
