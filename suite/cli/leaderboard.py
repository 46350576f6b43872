"""`suite leaderboard build|serve|publish|add`."""
from __future__ import annotations

import argparse
import functools
import http.server
from pathlib import Path

from ..foundation.errors import ConfigError, SuiteError
from .run import add_skip_corrupt


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="from a pilot: tasks and seeds needed to detect an effect, and their cost",
                       description="Sample-size planning from a pilot results folder: for each dataset and "
                                   "candidate-reference pair, the meta-test tasks (overlap-adjusted) and seeds a "
                                   "two-sided paired t-test needs to detect --effect with --power, and the hours it "
                                   "costs at the pilot's measured speed.")
    p.add_argument("--results", nargs="+", default=["results"], help="pilot results folders")
    p.add_argument("--sd", type=float, default=None,
                   help="instead of a pilot: the stated sd of paired task differences")
    p.add_argument("--seconds-per-task", type=float, default=0.0,
                   help="with --sd: fine-tuning seconds per task and algorithm")
    p.add_argument("--upfront-seconds", type=float, default=0.0,
                   help="with --sd: meta-training + lr selection seconds per algorithm and seed")
    p.add_argument("--effect", type=float, default=0.02, help="difference to detect, in the metric's units")
    p.add_argument("--power", type=float, default=0.8)
    p.add_argument("--alpha", type=float, default=0.05)
    add_skip_corrupt(p)
    p.set_defaults(func=cmd_plan)
    lb = sub.add_parser("leaderboard", help="significance tests and a static Plotly leaderboard site")
    lsub = lb.add_subparsers(dest="leaderboard_command", required=True, metavar="{build,serve,publish,add}")
    p = lsub.add_parser("build", help="build the static site from result folders")
    p.add_argument("--results", nargs="+", default=["results"], help="results folders (or run folders)")
    p.add_argument("--out", default="site", help="site folder to write")
    p.add_argument("--baseline", default="baseline", help="algorithm every other is compared against")
    p.add_argument("--resamples", type=int, default=1999, help="bootstrap resamples for the cost intervals (0: none; other CIs are t intervals)")
    add_skip_corrupt(p)
    p.set_defaults(func=cmd_build)
    p = lsub.add_parser("compare", help="per-dataset verdicts against the references, in the terminal")
    p.add_argument("--results", nargs="+", default=["results"], help="results folders (or run folders)")
    p.add_argument("--margin", type=float, default=0.02, help="equivalence margin in the metric's units")
    p.add_argument("--resamples", type=int, default=1999,
                   help="bootstrap resamples for the cost intervals (0: no intervals)")
    p.add_argument("--across-recipes", action="store_true",
                   help="pair rows of different recipes (finetune, linear-probe, setfit, finetune-lora, ...) on the same tasks, the "
                        "recipe in each candidate's name: a labelled cross-recipe comparison (default: within a recipe)")
    add_skip_corrupt(p)
    p.set_defaults(func=cmd_compare)
    p = lsub.add_parser("serve", help="serve a built site on localhost")
    p.add_argument("--site", default="site")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_serve)
    p = lsub.add_parser("publish", help="copy the site to a ready-to-push folder, or commit it to gh-pages")
    p.add_argument("--site", default="site")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--to", help="folder to write the ready-to-push site into, or an object-store prefix "
                                    "(s3://bucket/site, a static website bucket; files get their content types)")
    group.add_argument("--gh-pages", action="store_true", help="commit the site to the gh-pages branch of --repo")
    p.add_argument("--repo", default=".", help="git repository for --gh-pages")
    p.add_argument("--branch", default="gh-pages")
    p.set_defaults(func=cmd_publish)
    p = lsub.add_parser("add", help="validate a submitted results file and add it to a results folder")
    p.add_argument("file", help="task rows in the results schema (.parquet, .csv or .jsonl)")
    p.add_argument("--results", default="results", help="results folder to add the runs to")
    p.set_defaults(func=cmd_add)


def cmd_build(args) -> int:
    import time

    from metaft.algorithms import list_algorithms
    from metaft.leaderboard.site import build_site

    if args.baseline not in list_algorithms():
        raise ConfigError(f"--baseline {args.baseline!r} is not an algorithm; known: {', '.join(list_algorithms())}")
    t = time.perf_counter()
    out = build_site(args.results, args.out, args.baseline, args.resamples, skip_corrupt=args.skip_corrupt)
    size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
    print(f"built {out}/index.html ({size / 2**20:.1f} MiB) in {time.perf_counter() - t:.1f} s; "
          f"open it from disk or run `suite leaderboard serve --site {out}`")
    return 0


def cmd_compare(args) -> int:
    import pandas as pd

    from metaft.leaderboard.costs import amortization, format_amortization
    from metaft.leaderboard.stats import selector_regret, split_oracles
    from metaft.leaderboard.verdicts import format_verdicts, stratified_summary, verdicts
    from metaft.suite.results import load_results

    if not 0 < args.margin < 1e6:
        raise ConfigError(f"--margin must be a finite number > 0 in the metric's units, got {args.margin}")
    if args.resamples < 0:
        raise ConfigError(f"--resamples must be >= 0 (0: no bootstrap intervals), got {args.resamples}")
    runs, all_tasks = load_results(*args.results, skip_corrupt=args.skip_corrupt)
    if all_tasks.empty:
        raise ConfigError(f"no complete runs under {', '.join(args.results)}; run `suite run` first")
    tasks, oracles = split_oracles(all_tasks)  # hindsight bounds are never compared as methods
    if args.across_recipes:
        from metaft.leaderboard.stats import across_recipes

        tasks = across_recipes(tasks)
        print("across recipes (labelled): rows of every recipe paired on the same tasks by the protocol without "
              "the recipe; a candidate 'X + setfit' is start X fine-tuned by SetFit\n")
    table = verdicts(tasks, margin=args.margin)
    if table.empty:
        print("no reference runs (baseline or multitask): nothing to compare against")
        return 0
    print(format_verdicts(table))
    print("\none test per dataset (its own metric), paired over config-matched tasks; Holm over the candidates "
          "against one reference on one dataset; TOST: equivalence within the margin; MDE: the smallest "
          "difference this many tasks detects with 80% power at Holm's first level. With one seed the claim is about these "
          "meta-trained initialisations, not the algorithms.")
    summary = stratified_summary(tasks)
    if len(summary) and summary["datasets"].max() > 1:
        from metaft.suite.table import format_table_by_model

        print("\nacross datasets (stratified: each dataset's paired differences divided by their RMS, datasets "
              "weighted equally; a t-test over seeds with several, a sign-flip test over tasks with one; never a mean "
              "of unlike metrics; "
              "Holm over every candidate and reference of the model):\n")
        print(format_table_by_model(summary["model"], ["candidate", "vs", "datasets", "tasks", "units",
                                                       "standardised effect", "p", "Holm p", "claim"],
                           [[r.candidate, r.reference, r.datasets, r.tasks, f"{r.units} {r.unit}", f"{r.effect:+.3f}",
                             f"{r.p_value:.4f}", f"{r.p_holm:.4f}", r.claim] for r in summary.itertuples()],
                           "llrrrrrrl"))
    costs = amortization(tasks, runs, margin=args.margin, n_resamples=args.resamples)
    if not costs.empty:
        print(f"\ncost at equal quality, from quality at pre-declared budgets (docs/protocol.md#cost): cheaper = "
              f"non-inferior (±{args.margin:g}) at its full budget, and at some smaller compute budget both better "
              f"than the reference there and non-inferior to the reference's full-budget quality (one-sided t, "
              f"Holm over budgets); dearer = the same with the roles swapped. Compute ratio: the reference's over "
              f"the candidate's FLOPs at each one's smallest budget non-inferior to the reference's final quality; "
              f"break-even: extra up-front FLOPs (meta-training, lr selection) over FLOPs saved per task; "
              f"[95%]: bootstrap over the test units, {args.resamples} resamples; n.r.: not reached (never "
              f"non-inferior to the reference's final quality):\n")
        print(format_amortization(costs))
    regret = selector_regret(all_tasks) if len(oracles) else pd.DataFrame()
    if len(regret):
        from metaft.suite.table import format_table

        print("\nsource selection against its hindsight oracle (an upper bound that saw the query set; not ranked):\n")
        print(format_table(["model", "dataset", "selector", "tasks", "oracle", "selected", "regret", "regret %",
                            "picked oracle's source"],
                           [[r.model, r.dataset, r.algo, r.n, f"{r.oracle_metric:.3f}", f"{r.selected_metric:.3f}",
                             f"{r.regret:+.3f}", f"{r.regret_pct:.1f}", f"{r.picked_oracle_source:.0%}"]
                            for r in regret.itertuples()], "lllrrrrrr"))
    return 0


def cmd_plan(args) -> int:
    import math

    from metaft.leaderboard.planner import format_plan, plan
    from metaft.leaderboard.site import load_site_data

    if not (0 < args.power < 1 and 0 < args.alpha < 1 and 0 < args.effect < math.inf):
        raise ConfigError("--effect must be a finite number > 0 and --power, --alpha in (0, 1)")
    if args.sd is not None and not 0 < args.sd < math.inf:
        raise ConfigError(f"--sd must be a finite number > 0, got {args.sd}")
    if args.sd is not None:
        from metaft.leaderboard.planner import stated_plan

        table = stated_plan(args.sd, args.effect, args.alpha, args.power, args.seconds_per_task,
                            args.upfront_seconds)
    else:
        data = load_site_data(args.results, skip_corrupt=args.skip_corrupt)
        table = plan(data.tasks, data.runs, data.manifests, args.effect, args.alpha, args.power)
    if table.empty:
        print("no candidate-reference pairs with 2 or more paired tasks: run a reference (baseline or multitask) "
              "and a candidate on the same episodes first")
        return 0
    print(format_plan(table, args.effect, args.power))
    print(f"\ntasks: a two-sided paired t-test at Holm's first level (alpha {args.alpha:g} over the candidates "
          f"compared with the reference) detecting {args.effect:g} with power {args.power:.0%}, from the pilot's sd "
          f"of paired differences to its 95% upper confidence limit, divided by the share of distinct query "
          f"examples (overlapping query sets carry less information); seeds: at least 5 for an algorithm-level "
          f"claim, more when the pilot's seed-level sd asks for it; hours: measured fine-tuning seconds per task "
          f"of both algorithms x tasks (the range's upper end), plus their meta-training and lr selection, on the pilot's device.")
    return 0


def cmd_serve(args) -> int:
    import socket

    site = Path(args.site)
    if not (site / "index.html").is_file():
        raise SuiteError(f"{site} has no index.html; run `suite leaderboard build --out {site}` first")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be in 0..65535 (0: any free port), got {args.port}")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    try:
        server = http.server.ThreadingHTTPServer((args.host, args.port), handler)
    except socket.gaierror:
        raise ConfigError(f"--host {args.host!r} does not resolve to an address of this machine; "
                          f"use 127.0.0.1 (or 0.0.0.0 to serve every interface)") from None
    except OSError as exc:
        raise ConfigError(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}; pick another --port "
                          f"(0: any free one)") from None
    with server:
        print(f"serving {site} at http://{args.host}:{server.server_address[1]}/ (Ctrl-C to stop)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


def cmd_publish(args) -> int:
    from metaft.leaderboard.publish import publish, publish_gh_pages
    from metaft.suite.storage import is_uri

    if args.gh_pages:
        commit = publish_gh_pages(args.site, args.repo, args.branch)
        print(f"committed {args.site} to branch {args.branch} ({commit[:12]}); push it with "
              f"`git push origin {args.branch}`")
    else:
        print(f"wrote {publish(args.site, args.to)}" + ("" if is_uri(args.to) else "; push that folder to any static host"))
    return 0


def cmd_add(args) -> int:
    from metaft.leaderboard.submit import add_submission

    added = add_submission(args.file, args.results)
    print(f"added {len(added)} run(s) to {args.results}: {', '.join(added)}")
    return 0
