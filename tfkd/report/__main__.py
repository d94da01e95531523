"""python -m tfkd.report STUDY_DIR...: rebuild each study's results.csv, report.md and plots.

Folders of one study (the same recipe and --name, e.g. shards run on several machines with
--shard_index and copied here) are merged into one report, written into the first of them or
into --output. With --readme README.md, also regenerate the README's findings block.
"""

import argparse
import sys

from tfkd.report import StudyError, read_config, build, findings, merge


def main(argv=None):
    """Runs the command line; returns the exit status (0, or 2 for a folder it cannot report).

    Args:
        argv: arguments after the program name; None reads sys.argv.
    """
    parser = argparse.ArgumentParser(
        prog="python -m tfkd.report",
        description="Rebuild results.csv, report.md and plots/ of a study folder from its "
                    "config.json and runs/*/metrics.json and history.csv files. Folders of "
                    "one study (same recipe and --name: the shards of a sweep split across "
                    "machines with --shard_index) are merged into one report.")
    parser.add_argument("study_dir", nargs="+",
                        help="a study folder, e.g. runs/resolution_sweep/default")
    parser.add_argument("--output", help="where the report goes (one study only); default: "
                        "the first folder of each study")
    parser.add_argument("--readme", help="also replace the findings block of this README "
                        "with these studies' tables and main plots")
    args = parser.parse_args(argv)
    try:
        groups = merge.group_by_study(args.study_dir,
                                      [read_config(d) for d in args.study_dir])
        if args.output and len(groups) > 1:
            raise StudyError(f"--output takes the folders of one study, but these are "
                             f"{len(groups)} studies ({', '.join(g[0] for g in groups)}); "
                             "drop --output to write each report into its study's folder")
        for group in groups:
            for path in build(*group, output_dir=args.output).values():
                print(path)
        if args.readme:
            findings.update_readme(args.readme, groups, output_dir=args.output)
            print(args.readme)
    except (StudyError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
