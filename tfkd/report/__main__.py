"""python -m tfkd.report STUDY_DIR: rebuild a study's results.csv, report.md and plots."""

import argparse
import sys

from tfkd.report import StudyError, build


def main(argv=None):
    """Runs the command line; returns the exit status (0, or 2 for a folder it cannot report).

    Args:
        argv: arguments after the program name; None reads sys.argv.
    """
    parser = argparse.ArgumentParser(
        prog="python -m tfkd.report",
        description="Rebuild results.csv, report.md and plots/ of a study folder from its "
                    "config.json and runs/*/metrics.json and history.csv files.")
    parser.add_argument("study_dir", help="a study folder, e.g. runs/resolution_sweep/default")
    args = parser.parse_args(argv)
    try:
        written = build(args.study_dir)
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in written.values():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
