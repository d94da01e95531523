"""python -m tfkd.report STUDY_DIR...: rebuild each study's results.csv, report.md and plots.

With --readme README.md, also regenerate the README's findings block from those studies.
"""

import argparse
import sys

from tfkd.report import StudyError, build, findings


def main(argv=None):
    """Runs the command line; returns the exit status (0, or 2 for a folder it cannot report).

    Args:
        argv: arguments after the program name; None reads sys.argv.
    """
    parser = argparse.ArgumentParser(
        prog="python -m tfkd.report",
        description="Rebuild results.csv, report.md and plots/ of a study folder from its "
                    "config.json and runs/*/metrics.json and history.csv files.")
    parser.add_argument("study_dir", nargs="+",
                        help="a study folder, e.g. runs/resolution_sweep/default")
    parser.add_argument("--readme", help="also replace the findings block of this README "
                        "with these studies' tables and main plots")
    args = parser.parse_args(argv)
    try:
        for study_dir in args.study_dir:
            for path in build(study_dir).values():
                print(path)
        if args.readme:
            findings.update_readme(args.readme, args.study_dir)
            print(args.readme)
    except (StudyError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
