"""One study from several folders: the shards of a sweep that ran on several machines.

`python -m tfkd.recipes.NAME --shard_index=i --num_shards=N` on N machines gives N folders of
one study, each with the runs of its shard. Folders are one study when their config.json name
the same recipe and agree on every flag recorded there (recipes leave out the flags that only
say how a study runs: --strategy, --shard_index, --num_shards, --output_dir, --name, verbosity).
"""

import os


def group_by_study(dirs, configs):
    """The folders grouped by (recipe, study name), in order of first appearance.

    Args:
        dirs: study folders; a folder given twice counts once.
        configs: their parsed config.json, in the same order.

    Returns:
        A list of lists of folders: the folders of one study each.
    """
    groups, seen = {}, set()
    for folder, config in zip(dirs, configs):
        real = os.path.realpath(folder)
        if real not in seen:
            seen.add(real)
            groups.setdefault((config.get("recipe"), config.get("name")), []).append(folder)
    return list(groups.values())


def difference(dirs, configs):
    """Why the folders cannot be merged into one study, or None when they can."""
    first, first_config = dirs[0], configs[0]
    for folder, config in zip(dirs[1:], configs[1:]):
        if config.get("recipe") != first_config.get("recipe"):
            why = (f"{first} is a {first_config.get('recipe')} study and {folder} a "
                   f"{config.get('recipe')} study")
        else:
            why = _flag_difference(first_config, config)
            if not why:
                continue
            why = f"{first} and {folder} were run with different flags ({why})"
        return (f"cannot merge these folders into one report: {why}. Merge only the shards of "
                "one study (the same command with other --shard_index values), or report each "
                "folder on its own: python -m tfkd.report FOLDER")
    return None


def _flag_difference(a, b):
    flags_a, flags_b = a.get("flags") or {}, b.get("flags") or {}
    if not isinstance(flags_a, dict) or not isinstance(flags_b, dict):
        return None if flags_a == flags_b else "unreadable flags"
    changed = sorted(k for k in set(flags_a) | set(flags_b) if flags_a.get(k) != flags_b.get(k))
    return ", ".join(f"--{k}: {_text(flags_a.get(k))} vs {_text(flags_b.get(k))}"
                     for k in changed[:5]) + (f" and {len(changed) - 5} more"
                                              if len(changed) > 5 else "")


def _text(value):
    return ",".join(str(v) for v in value) if isinstance(value, list) else str(value)


def split_repeats(found, taken):
    """(runs of `found` not yet in `taken`, [(run folder, why it is left out)] for the others).

    A run complete in two folders (a shard run twice, or a folder copied into another) is
    reported once, from the folder given first.
    """
    have = {r["run_id"]: r["_study"] for r in taken}
    new, repeated = [], []
    for run in found:
        if run["run_id"] in have:
            repeated.append((f"runs/{run['_folder']}", "also complete in "
                             f"{have[run['run_id']]}, which is reported"))
        else:
            new.append(run)
    return new, repeated
