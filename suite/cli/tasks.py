"""`suite tasks ...` and `suite data ...`: inspect datasets, episodes and mirrors."""
from __future__ import annotations

import argparse

from metaft.tasks import (
    DataError,
    build_manifest,
    check_disjoint,
    get_dataset_spec,
    iter_episodes,
    list_datasets,
    load_split,
    make_benchmark,
    resolve_data_dir,
)
from metaft.tasks.benchmark import PROTOCOLS, SIDES, episode_rng
from metaft.tasks.episodes import sample_episode
from metaft.tasks.pools import check_leakage
from metaft.tasks.task_types import get_task_type

from ..paths import check_output_file
from ..table import format_table
from .run import comma_list, seed_value


def add_parsers(sub: argparse._SubParsersAction) -> None:
    tasks = sub.add_parser("tasks", help="list datasets, show one with a sampled episode, write episode manifests")
    tsub = tasks.add_subparsers(dest="tasks_command", required=True, metavar="{list,show,episodes}")
    p = tsub.add_parser("list", help="a table of the registered datasets and where they load from")
    _data_dir(p)
    p.set_defaults(func=cmd_list)
    p = tsub.add_parser("show", help="the spec of one dataset and one sampled episode")
    p.add_argument("name", help="dataset name (see `suite tasks list`)")
    p.add_argument("--seed", type=seed_value, default=0, help="episode seed (default 0)")
    p.add_argument("--split", default=None, help="split to sample from (default: its evaluation split)")
    _data_dir(p)
    p.set_defaults(func=cmd_show)
    p = tsub.add_parser("episodes", help="sample a benchmark's tasks and write their example ids as JSON")
    p.add_argument("--benchmark", "--protocol", dest="protocol", choices=PROTOCOLS, default="cross-dataset",
                   help="benchmark protocol (default cross-dataset)")
    p.add_argument("--datasets", default=None, help="comma-separated subset of datasets")
    p.add_argument("--meta-train-tasks", type=int, default=50, help="number of meta-training tasks (default 50)")
    p.add_argument("--meta-test-tasks", type=int, default=20, help="number of meta-testing tasks (default 20)")
    p.add_argument("--val-tasks", type=int, default=0, help="number of validation tasks (default 0)")
    p.add_argument("--seed", type=seed_value, default=0, help="episode seed (default 0)")
    p.add_argument("--out", required=True, help="where to write the manifest JSON")
    _data_dir(p)
    p.set_defaults(func=cmd_episodes)

    data = sub.add_parser("data", help="manage local dataset mirrors")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="{export}")
    p = dsub.add_parser("export", help="download datasets from the Hub into a mirror folder for offline use")
    p.add_argument("--to", required=True, help="mirror folder to write <name>/<split>.parquet into")
    p.add_argument("--datasets", default=None, help="comma-separated subset (default: all)")
    p.set_defaults(func=cmd_export)


def _data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=None,
                   help="local mirror folder (<name>/<split>.parquet); default $SUITE_DATA_DIR, else the Hub")


def _names(value: str | None) -> list[str]:
    names = comma_list(value) if value else list_datasets()
    for n in names:
        get_dataset_spec(n)
    return names


def cmd_list(args) -> int:
    root = resolve_data_dir(args.data_dir)
    rows = []
    for name in list_datasets():
        spec = get_dataset_spec(name)
        avail = []
        for split in spec.splits:
            try:
                avail.append(f"{split}={load_split(name, split, root).num_rows}" if root else split)
            except DataError:
                avail.append(f"{split}=missing")
        source = "mirror" if root else (spec.hub_id or "mirror only")
        rows.append([name, spec.task_type, spec.metric, " ".join(avail), source])
    print(format_table(["dataset", "task type", "metric", "splits (rows)", "loads from"], rows))
    if root:
        print(f"\nmirror: {root}")
    return 0


def cmd_show(args) -> int:
    spec = get_dataset_spec(args.name)
    split = args.split or spec.eval_split
    loaded = load_split(spec.name, split, args.data_dir)
    bench = make_benchmark("in-dataset", datasets=[spec.name])
    shape = bench.shapes[spec.task_type]
    ep = sample_episode(loaded, shape, episode_rng(bench, args.seed, "meta-test", 0), side="meta-test")
    print(f"{spec.name}: {spec.description}")
    for key, value in spec.to_dict().items():
        if key not in ("name", "description") and value not in (None, [], ""):
            value = ", ".join(map(str, value)) if isinstance(value, list) else value
            print(f"  {key:12s} {value}")
    print(f"  {'source':12s} {loaded.source} ({loaded.num_rows} rows, {loaded.fingerprint[:23]})")
    print(f"\nepisode (seed {args.seed}, split {split}): {len(ep.support)} support, {len(ep.query)} query; "
          f"shape ways={shape.ways} shots={shape.shots} queries={shape.queries}")
    if ep.label_names:
        print("labels: " + ", ".join(f"{i}={n}" for i, n in enumerate(ep.label_names)))
    for part, examples in (("support", ep.support), ("query", ep.query)):
        print(f"\n{part}:")
        for ex in examples[:6]:
            print("  " + get_task_type(ep.task_type).show(ex, ep.label_names))
        if len(examples) > 6:
            print(f"  ... {len(examples) - 6} more")
    return 0


def cmd_episodes(args) -> int:
    out = check_output_file(args.out, "--out")
    datasets = _names(args.datasets) if args.datasets else None
    bench = make_benchmark(args.protocol, datasets=datasets, n_meta_train=args.meta_train_tasks,
                           n_meta_test=args.meta_test_tasks, n_meta_val=args.val_tasks)
    episodes = {side: list(iter_episodes(bench, args.seed, side, args.data_dir)) for side in SIDES}
    check_leakage(episodes["meta-test"], episodes["meta-train"] + episodes["meta-val"])
    manifest = build_manifest(bench, args.seed, args.data_dir, episodes=[e for s in SIDES for e in episodes[s]])
    check_disjoint(manifest)
    path = manifest.write(out)
    sides = {s: sum(1 for t in manifest.tasks if t["side"] == s) for s in SIDES}
    print(f"wrote {path}: benchmark {bench.key}, seed {args.seed}, {sides['meta-train']} meta-training, "
          f"{sides['meta-val']} validation and {sides['meta-test']} meta-testing tasks (checked by content: no "
          f"meta-test query text on the other sides), fingerprint {manifest.fingerprint}")
    return 0


def cmd_export(args) -> int:
    from metaft.tasks import export_mirror

    export_mirror(_names(args.datasets), args.to)
    return 0


