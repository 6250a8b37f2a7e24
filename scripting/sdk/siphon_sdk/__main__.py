"""``python -m siphon_sdk --version``: the SDK, the engine it drives and the Python it embeds."""

import argparse
import sys

from . import _engine


def _sdk_version():
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - Python < 3.8
        return "unknown"
    try:
        return version("siphon-sdk")
    except PackageNotFoundError:
        return "source tree (not installed)"


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m siphon_sdk",
                                description="siphon SDK: test routing scripts on the real engine")
    p.add_argument("--version", action="store_true",
                   help="print the SDK and engine versions and the Python the engine embeds")
    args = p.parse_args(argv)
    if not args.version:
        p.print_help()
        return 0
    try:
        driver = _engine.driver_path()
        line = _engine.version_line(driver)
    except (OSError, RuntimeError) as e:
        print(f"siphon-sdk {_sdk_version()}: {e}", file=sys.stderr)
        return 1
    print(f"siphon-sdk {_sdk_version()} (Python {sys.version.split()[0]})")
    print(f"{line}\n  driver: {driver}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
