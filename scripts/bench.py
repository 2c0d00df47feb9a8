#!/usr/bin/env python3
"""Reduces the samples of `robust-harness bench` (BENCH lines of a guest log) to the figures of
make bench: medians and spreads of per-round ratios, the goals with their verdicts, a JSON file,
a text table and an SVG picture of the curves; with --combine, the goals of several runs (boots)
side by side, each met only if it is met in every run.

Each round measured its conditions next to each other, so ratios are taken within a round and
then reduced over the rounds: the median, and the 10th and 90th percentiles as the spread.
"""
import argparse
import json
import os
import re
import statistics
import sys
import textwrap


def pct(v, p):
    v = sorted(v)
    k = (len(v) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def spread(v):
    return {"median": statistics.median(v), "p10": pct(v, 0.1), "p90": pct(v, 0.9), "n": len(v)}


def ratios(fig, a, b):
    return [x / y for x, y in zip(fig[a], fig[b])]


def slope(points):
    """Least-squares slope of (n, y) points."""
    n = [p[0] for p in points]
    y = [p[1] for p in points]
    mn, my = statistics.mean(n), statistics.mean(y)
    return sum((a - mn) * (b - my) for a, b in zip(n, y)) / sum((a - mn) ** 2 for a in n)


def panel(top, title, xlabel, ylabel, curves, xticks, ref=None, w=720, h=330, m=60):
    """SVG elements of one chart at height `top`: curves of (x position 0..1, y, lo, hi)
    points, x tick labels at positions, an optional dashed reference line (a goal) at y."""
    ys = [v for c in curves.values() for _, y, lo, hi in c for v in (y, hi)]
    ys += [ref] if ref else []
    ymin = min(0.0, min(ys)) if not ref else min(min(ys), ref) * 0.9
    ymax = max(ys) * 1.1
    px = lambda x: m + (w - 2 * m) * x
    py = lambda y: top + h - m - (h - 2 * m) * (y - ymin) / (ymax - ymin)
    out = [f'<text x="{w / 2}" y="{top + 20}" text-anchor="middle" font-size="14">{title}</text>',
           f'<line x1="{m}" y1="{top + h - m}" x2="{w - m}" y2="{top + h - m}" stroke="black"/>',
           f'<line x1="{m}" y1="{top + m}" x2="{m}" y2="{top + h - m}" stroke="black"/>',
           f'<text x="{w / 2}" y="{top + h - 15}" text-anchor="middle">{xlabel}</text>',
           f'<text x="15" y="{top + h / 2}" transform="rotate(-90 15 {top + h / 2})" '
           f'text-anchor="middle">{ylabel}</text>']
    for x, label in xticks:
        out.append(f'<text x="{px(x):.1f}" y="{top + h - m + 16}" text-anchor="middle">'
                   f'{label}</text>')
    for i in range(6):
        y = ymin + (ymax - ymin) * i / 5
        out.append(f'<text x="{m - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.2f}</text>')
        out.append(f'<line x1="{m}" y1="{py(y):.1f}" x2="{w - m}" y2="{py(y):.1f}" '
                   'stroke="#ddd"/>')
    if ref:
        out.append(f'<line x1="{m}" y1="{py(ref):.1f}" x2="{w - m}" y2="{py(ref):.1f}" '
                   'stroke="black" stroke-dasharray="6,4"/>')
        out.append(f'<text x="{w - m}" y="{py(ref) - 4:.1f}" text-anchor="end">goal</text>')
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    for i, (name, pts) in enumerate(curves.items()):
        col = colors[i % len(colors)]
        line = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y, _, _ in pts)
        out.append(f'<polyline points="{line}" fill="none" stroke="{col}" stroke-width="2"/>')
        for x, y, lo, hi in pts:
            out.append(f'<line x1="{px(x):.1f}" y1="{py(lo):.1f}" x2="{px(x):.1f}" '
                       f'y2="{py(hi):.1f}" stroke="{col}"/>')
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{col}"/>')
        out.append(f'<text x="{m + 10}" y="{top + m + 16 * i}" fill="{col}">{name}</text>')
    return out


def svg(res, path):
    """The picture of one run: the call's cost against the tasks sharing the memory, the exit
    walk against N, and the preload library's calls, each with its spread and goal."""
    import math
    w, h = 720, 330
    out = []
    top = 0
    scaling = {"threads of the caller's process (private)": res["threads"],
               "processes mapping a memfd": res["processes"]}
    xs = sorted({s["tasks"] for c in scaling.values() for s in c})
    if xs:
        lx = math.log2(max(xs)) or 1
        pos = lambda n: math.log2(n) / lx
        out += panel(top, "cleanup_robust_list() cost vs tasks sharing the memory "
                     "(median, p10-p90)", "tasks mapping the memory (log2 scale)",
                     "cost / null system call",
                     {k: [(pos(s["tasks"]), s["median"], s["p10"], s["p90"]) for s in c]
                      for k, c in scaling.items()}, [(pos(x), x) for x in xs], w=w, h=h)
        top += h
    ns = sorted({s["n"] for s in res["exit"]})
    if ns:
        pos = {n: i / max(1, len(ns) - 1) for i, n in enumerate(ns)}
        kinds = sorted({s["kind"] for s in res["exit"]})
        out += panel(top, "exit walk, module / built-in walker, against N owned futexes",
                     "N (entries on the list)", "module / built-in",
                     {k: [(pos[s["n"]], s["median"], s["p10"], s["p90"])
                          for s in res["exit"] if s["kind"] == k] for k in kinds},
                     [(pos[n], n) for n in ns], ref=1.0, w=w, h=h)
        top += h
    pre = res.get("preload", {})
    # A robust mutex's destroy makes the call itself (tens of times glibc's destroy): said in
    # the title, so that the other calls' scale stays readable.
    ops = [o for o in pre if o != "destroy_robust"]
    if ops:
        pos = {op: (i + 0.5) / len(ops) for i, op in enumerate(ops)}
        extra = (f"; destroy_robust {pre['destroy_robust']['median']:.0f}x (the call)"
                 if "destroy_robust" in pre else "")
        out += panel(top, f"preload library: each call through it / glibc's own{extra}",
                     "interposed call", "with / without",
                     {"median, p10-p90":
                      [(pos[o], pre[o]["median"], pre[o]["p10"], pre[o]["p90"]) for o in ops]},
                     [(pos[o], o.replace("_", " ")) for o in ops], ref=1.05, w=w, h=h)
        top += h
    head = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{top}" '
            'font-family="sans-serif" font-size="12">',
            f'<rect width="{w}" height="{top}" fill="white"/>']
    with open(path, "w") as f:
        f.write("\n".join(head + out + ["</svg>"]) + "\n")


def table(header, rows):
    """A reStructuredText simple table."""
    cols = list(zip(header, *rows))
    w = [max(len(c) for c in col) for col in cols]
    line = "  ".join("=" * n for n in w)
    fmt = lambda r: "  ".join(c.ljust(n) for c, n in zip(r, w)).rstrip()
    return "\n".join([line, fmt(header), line] + [fmt(r) for r in rows] + [line]) + "\n"


# The conditions of the one-call figure: the call on three kinds of memory, then its floors.
CLEANUP_KINDS = ("private", "shared_anon", "memfd", "mincore", "msync", "getcpu", "remote_read")


def rst(res):
    """The tables of Documentation/robust-futex/performance.rst, from one run."""
    f2 = lambda v: f"{v:.2f}"
    out = []
    c = res["cleanup"]
    out.append("One call on one word (one thread), in null system calls:\n\n")
    out.append(table(("memory", "median", "p10", "p90"), [
        (k, f2(c[k]["median"]), f2(c[k]["p10"]), f2(c[k]["p90"]))
        for k in CLEANUP_KINDS if k in c]))
    for fig, title in (("threads", "Against the threads of the caller's process (private "
                        "memory)"),
                       ("processes", "Against the processes that map the memfd (one thread "
                        "each)"),
                       ("unrelated", "Against unrelated idle tasks (the caller has two "
                        "threads)")):
        out.append(f"\n{title}, in null system calls:\n\n")
        out.append(table(("tasks", "median", "p10", "p90"), [
            (str(s["tasks"]) + (" (again)" if s.get("after") else ""), f2(s["median"]),
             f2(s["p10"]), f2(s["p90"])) for s in res[fig]]))
    out.append("\nExit walk, module / built-in walker:\n\n")
    out.append(table(("N", "list", "median", "p10", "p90", "built-in (us)"), [
        (str(s["n"]), s["kind"], f"{s['median']:.3f}", f"{s['p10']:.3f}", f"{s['p90']:.3f}",
         f"{s['builtin_ns'] / 1000:.0f}") for s in res["exit"]]))
    if res.get("churn"):
        out.append("\nA thread's start and exit, module / built-in walker, against the threads "
                   "of the process:\n\n")
        out.append(table(("threads", "median", "p10", "p90", "built-in (us)"), [
            (str(s["n"]), f"{s['median']:.3f}", f"{s['p10']:.3f}", f"{s['p90']:.3f}",
             f"{s['builtin_ns'] / 1000:.0f}") for s in res["churn"]]))
    if res.get("preload"):
        out.append("\nThe preload library: each call through it / glibc's own function, "
                   "in alternation in one process (TSC ticks, medians over rounds):\n\n")
        out.append(table(("call", "median", "p10", "p90", "without", "with"), [
            (k, f"{v['median']:.3f}", f"{v['p10']:.3f}", f"{v['p90']:.3f}",
             f"{v['without_ticks']:.0f}", f"{v['with_ticks']:.0f}")
            for k, v in res["preload"].items()]))
    if res.get("unlock"):
        u = res["unlock"]
        out.append("\n" + textwrap.fill(
            "The cost of each approach where it is paid: one robust lock/unlock pair with "
            "glibc's classic unlock and with the merged sequence (ns, medians; ratio merged / "
            "classic per round), and one cleanup_robust_list() per destroy (private "
            "memory):", 78) + "\n\n")
        rows = []
        for label, k, b in (("uncontended", "merged", "classic"),
                            ("contended", "merged_contended", "classic_contended")):
            s = u[k]["vs_classic"]
            rows.append((label, f"{u[b]['ns']:.0f}", f"{u[k]['ns']:.0f}",
                         f"{s['median']:.3f}", f"{s['p10']:.3f}", f"{s['p90']:.3f}"))
        out.append(table(("unlock", "classic", "merged", "ratio", "p10", "p90"), rows))
        out.append(f"\nNull system call {u['null']['ns']:.0f} ns; cleanup_robust_list() "
                   f"per destroy {res['cleanup']['private']['ns']:.0f} ns.\n")
    fl = res["floors"]
    out.append("\n" + textwrap.fill(
        "Floors, in null system calls: a call that looks up one VMA (``mincore()``) "
        f"{fl['vma_lookup_call']:.2f}, one that does nothing else (``msync(MS_ASYNC)`` "
        f"of a private page) {fl.get('vma_lookup_only', float('nan')):.2f}, and with "
        f"``getcpu()`` beyond the null call added (a rough figure for one user access) "
        f"{fl.get('lookup_and_user_access', float('nan')):.2f}; a remote 16-byte read beyond "
        "the system call "
        f"itself {fl['remote_read_marginal']:.2f}; one word of each thread's TCB read "
        f"from user space {fl['touch_tcb_per_thread']:.3f} per thread, read by the kernel "
        f"(``pwritev()`` of a piece of each) {fl.get('kernel_read_tcb_per_thread', 0):.3f} "
        f"per thread, each thread visited by the kernel (``getrusage(RUSAGE_SELF)``) "
        f"{fl.get('kernel_visit_per_thread', float('nan')):.3f} per thread; each mapping of "
        f"a memfd found and visited by the kernel (``fallocate()`` punching a hole in an "
        f"untouched page: a page-table walk, an mmu_notifier range and a TLB gather each) "
        f"{fl.get('kernel_mapper_walk_per_process', float('nan')):.3f} per process. "
        f"An exit with an empty list (no entry to walk: the call into the "
        f"module, leaving the index), module / built-in, worst list kind: "
        f"{fl.get('exit_no_entry', float('nan')):.3f}." + (
            f" Unmapping a written shared page with the module's unmap operations reduced to "
            f"asking for the task work (``bench_unmap_floor``) / built-in: "
            f"{res['unmap']['floor']['median']:.3f}."
            if "floor" in res.get("unmap", {}) else ""), 78) + "\n")
    out.append("\n@@GOALS@@\n")
    out.append(table(("goal", "measured", "limit", "met"), [
        (g["goal"], f"{g['measured']:.3f}", f"{g['limit']}", "yes" if g["met"] else "no")
        for g in res["goals"]]))
    return "".join(out)


def combine(paths, out):
    """The goals of several runs side by side: each run's median, met only if met in all."""
    runs = [json.load(open(p)) for p in paths]
    lines = [f"goals over {len(runs)} runs (boots): each run's median; met only if met in every run"]
    rows = []
    for i, g in enumerate(runs[0]["goals"]):
        # Goal names may carry the N of a worst case, which differs between runs: match by
        # position and by the name up to its first parenthesis.
        stem = g["goal"].split(" (N=")[0]
        vals = []
        for r in runs:
            m = next((x for x in r["goals"] if x["goal"].split(" (N=")[0] == stem), None)
            vals.append(m)
        met = all(v is not None and v["met"] for v in vals)
        shown = "  ".join(f"{v['measured']:7.3f}" if v else "    n/a" for v in vals)
        lines.append(f"  {'met   ' if met else 'MISSED'} {g['goal']}: {shown} "
                     f"(goal <= {g['limit']})")
        rows.append({"goal": stem, "limit": g["limit"], "met": met,
                     "measured": [v["measured"] if v else None for v in vals]})
    lines.append("floors per run (null calls; unmap floor as a ratio to built-in):")
    for p_, r in zip(paths, runs):
        fl = r.get("floors", {})
        uf = r.get("unmap", {}).get("floor", {}).get("median")
        lines.append(f"  {os.path.basename(p_)}: " + ", ".join(
            f"{k} {v:.3f}" for k, v in fl.items()) + (f", unmap_floor {uf:.3f}" if uf else ""))
    with open(out + ".json", "w") as f:
        json.dump({"runs": paths, "goals": rows}, f, indent=1)
    with open(out + ".txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"written: {out}.json {out}.txt")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log")
    ap.add_argument("--combine", nargs="+", metavar="JSON",
                    help="the .json of several runs: their goals side by side")
    ap.add_argument("--out", required=True,
                    help="path prefix of the .json, .txt, .rst and .svg it writes")
    ap.add_argument("--partial", action="store_true",
                    help="some figures only (RF_BENCH): print theirs, no goals or files")
    a = ap.parse_args()
    if a.combine:
        return combine(a.combine, a.out)
    if not a.log:
        sys.exit("--log or --combine")
    figs = []
    with open(a.log, errors="replace") as f:
        for line in f:
            m = re.search(r"BENCH (\{.*\})", line)
            if m:
                figs.append(json.loads(m.group(1)))
    if not figs:
        sys.exit("no BENCH lines in " + a.log)
    res = {"cleanup": {}, "threads": [], "processes": [], "unrelated": [], "exit": []}
    lines = []
    p = lines.append

    c = next((f for f in figs if f["figure"] == "cleanup"), None)
    if c is None and not a.partial:
        sys.exit("no cleanup figure in " + a.log)
    if c:
        p("cleanup_robust_list() on one word, one thread (ratio to the null system call getppid);")
        p("floors: mincore() of one page (mmap_lock + VMA lookup), msync(MS_ASYNC) (the lookup "
          "alone), getcpu() (one put_user()), process_vm_readv() of 16 bytes")
        p(f"  null system call: {statistics.median(c['null']):.0f} ns (median)")
    for k in (k for k in CLEANUP_KINDS if c and k in c):
        s = spread(ratios(c, k, "null"))
        s["ns"] = statistics.median(c[k])
        res["cleanup"][k] = s
        p(f"  {k:12} {s['median']:6.2f}x  (p10 {s['p10']:.2f}, p90 {s['p90']:.2f}; "
          f"{s['ns']:.0f} ns)")

    for fig, title in (("threads", "threads of the caller's process, private mutex"),
                       ("processes", "processes mapping the memfd (one thread each)"),
                       ("unrelated", "unrelated idle tasks, private mutex")):
        p(f"cost vs {title}")
        for f in (f for f in figs if f["figure"] == fig):
            s = spread(ratios(f, "cleanup", "null"))
            s["tasks"] = f["n"]
            s["after"] = f.get("after", False)
            res[fig].append(s)
            again = " (again, after)" if s["after"] else ""
            p(f"  {f['n']:6}  {s['median']:6.2f}x null  (p10 {s['p10']:.2f}, "
              f"p90 {s['p90']:.2f}){again}")

    p("exit walk: module / built-in walker, time from exit to pthread_join() return")
    for f in (f for f in figs if f["figure"] == "exit"):
        s = spread(ratios(f, "module", "builtin"))
        s.update(n=f["n"], kind=f["kind"], module_ns=statistics.median(f["module"]),
                 builtin_ns=statistics.median(f["builtin"]))
        res["exit"].append(s)
        p(f"  N={f['n']:5} {f['kind']:8} {s['median']:.3f}  (p10 {s['p10']:.3f}, "
          f"p90 {s['p90']:.3f}; {s['builtin_ns'] / 1000:.1f} us built-in)")

    p("thread start + exit (set_robust_list(), walk, join): module / built-in, vs threads alive")
    res["churn"] = []
    for f in (f for f in figs if f["figure"] == "churn"):
        s = spread(ratios(f, "module", "builtin"))
        s.update(n=f["n"], builtin_ns=statistics.median(f["builtin"]))
        res["churn"].append(s)
        p(f"  N={f['n']:5} {s['median']:.3f}  (p10 {s['p10']:.3f}, p90 {s['p90']:.3f}; "
          f"{s['builtin_ns'] / 1000:.1f} us built-in)")

    u = next((f for f in figs if f["figure"] == "unmap"), None)
    if u:
        s = spread(ratios(u, "module", "builtin"))
        s["builtin_ns"] = statistics.median(u["builtin"])
        res["unmap"] = s
        p(f"mmap + munmap of a written shared page, module / built-in: {s['median']:.3f}  "
          f"(p10 {s['p10']:.3f}, p90 {s['p90']:.3f}; {s['builtin_ns'] / 1000:.1f} us built-in)")
        if "floor" in u:
            f_ = spread(ratios(u, "floor", "builtin"))
            res["unmap"]["floor"] = f_
            p(f"  floor (the hook, the call into the module and the task work, nothing else) / "
              f"built-in: {f_['median']:.3f}  (p10 {f_['p10']:.3f}, p90 {f_['p90']:.3f})")

    p("preload library: each interposed call through it / glibc's own (1000 calls a round)")
    res["preload"] = {}
    for f in (f for f in figs if f["figure"] == "preload"):
        s = spread(ratios(f, "with", "without"))
        s["without_ticks"] = statistics.median(f["without"])
        s["with_ticks"] = statistics.median(f["with"])
        res["preload"][f["op"]] = s
        p(f"  {f['op']:30} {s['median']:.3f}  (p10 {s['p10']:.3f}, p90 {s['p90']:.3f}; "
          f"{s['without_ticks']:.0f} -> {s['with_ticks']:.0f} ticks)")

    res["unlock"] = {}
    u = next((f for f in figs if f["figure"] == "unlock"), None)
    if u:
        p("robust lock/unlock pair, ns (median) and merged / classic (per-round ratio)")
        for k in ("null", "classic", "merged", "classic_contended", "merged_contended"):
            res["unlock"][k] = {"ns": statistics.median(u[k])}
        for a_, b_ in (("merged", "classic"), ("merged_contended", "classic_contended")):
            s = spread(ratios(u, a_, b_))
            res["unlock"][a_].update(vs_classic=s)
            p(f"  {a_:17} {res['unlock'][a_]['ns']:7.0f} ns vs {b_} "
              f"{res['unlock'][b_]['ns']:7.0f} ns: {s['median']:.3f}  (p10 {s['p10']:.3f}, "
              f"p90 {s['p90']:.3f})")
        if "private" in res["cleanup"]:
            p(f"  null system call {res['unlock']['null']['ns']:7.0f} ns; one "
              f"cleanup_robust_list() per destroy (private): "
              f"{res['cleanup']['private']['ns']:.0f} ns")

    if a.partial:
        print("\n".join(lines))
        return
    per_thread = slope([(s["tasks"], s["median"]) for s in res["threads"]])
    per_proc = slope([(s["tasks"], s["median"]) for s in res["processes"]])
    # The slowdown against the mean of the two runs with none (before and after).
    nones = [s["median"] for s in res["unrelated"] if s["tasks"] == 0]
    u0 = statistics.mean(nones)
    ufar = max((s for s in res["unrelated"]), key=lambda s: s["tasks"])
    worst_exit = max(res["exit"], key=lambda s: s["median"])
    # Floors: what the same work costs in a system call of the kernel's own, in null calls.
    floor_lookup = res["cleanup"]["mincore"]["median"]
    floor_remote = res["cleanup"]["remote_read"]["median"] - 1.0
    # msync(MS_ASYNC) of a private page: the mmap_lock and the VMA lookup, nothing else; with
    # getcpu() - null added (getcpu()'s only work is one put_user(), but the null call,
    # getppid(), does more than getcpu()'s body: a rough figure for one user access), roughly
    # the work of a call on private memory done by system calls of the kernel's own, per round.
    floor_resolve = res["cleanup"].get("msync", {}).get("median", float("nan"))
    floor_call = [m + g - n for m, g, n in zip(c.get("msync", []), c.get("getcpu", []), c["null"])]
    floor_call_null = statistics.median(ratios({"f": floor_call, "n": c["null"]}, "f", "n")) \
        if floor_call else float("nan")
    over_floor = statistics.median(ratios({"p": c["private"], "f": floor_call}, "p", "f")) \
        if floor_call else float("nan")
    touch = [(f["n"], statistics.median(ratios(f, "touch", "null")))
             for f in figs if f["figure"] == "threads" and "touch" in f]
    floor_touch = slope(touch) if len(touch) > 1 else float("nan")
    kread = [(f["n"], statistics.median(ratios(f, "kread", "null")))
             for f in figs if f["figure"] == "threads" and "kread" in f]
    floor_kread = slope(kread) if len(kread) > 1 else float("nan")
    visit = [(f["n"], statistics.median(ratios(f, "visit", "null")))
             for f in figs if f["figure"] == "threads" and "visit" in f]
    floor_visit = slope(visit) if len(visit) > 1 else float("nan")
    punch = [(f["n"], statistics.median(ratios(f, "punch", "null")))
             for f in figs if f["figure"] == "processes" and "punch" in f]
    floor_punch = slope(punch) if len(punch) > 1 else float("nan")
    # The exit of a thread with an empty list: no entry to walk, only what the module adds
    # to every exit (the call into it, leaving the index): the floor of the exit walk row.
    empty = [s["median"] for s in res["exit"] if s["n"] == 0]
    floor_exit = max(empty) if empty else float("nan")
    small = [s for s in res["threads"] if s["tasks"] <= 8]
    per_thread_small = slope([(s["tasks"], s["median"]) for s in small])
    res["floors"] = {"vma_lookup_call": floor_lookup, "vma_lookup_only": floor_resolve,
                     "lookup_and_user_access": floor_call_null, "call_over_its_floor": over_floor,
                     "remote_read_marginal": floor_remote,
                     "touch_tcb_per_thread": floor_touch,
                     "kernel_read_tcb_per_thread": floor_kread,
                     "kernel_visit_per_thread": floor_visit,
                     "kernel_mapper_walk_per_process": floor_punch,
                     "per_thread_up_to_8": per_thread_small,
                     "exit_no_entry": floor_exit}
    p(f"floors: a call that looks up one VMA (mincore): {floor_lookup:.2f}x null; "
      f"a remote 16-byte read beyond the syscall itself: {floor_remote:.2f} null;")
    p(f"        a call that only looks up one VMA (msync MS_ASYNC): {floor_resolve:.2f}x null; "
      f"msync + getcpu - null (approximate): {floor_call_null:.2f}; the call / that: "
      f"{over_floor:.2f}")
    p(f"        reading one word of each thread's TCB from user space: {floor_touch:.3f} null "
      f"per thread (the call, up to 8 threads: {per_thread_small:.3f})")
    p(f"        the kernel reading one word of each thread's TCB (pwritev of a piece of each): "
      f"{floor_kread:.3f} null per thread")
    p(f"        the kernel visiting each thread of the process (getrusage(RUSAGE_SELF)): "
      f"{floor_visit:.3f} null per thread")
    p(f"        the kernel walking each mapping of the memfd (fallocate(PUNCH_HOLE) of an "
      f"untouched page): {floor_punch:.3f} null per process")
    p(f"        an exit with an empty list (N=0), module / built-in, worst list kind: "
      f"{floor_exit:.3f}")
    goals = [
        ("one thread, private mutex: cleanup / null syscall", res["cleanup"]["private"]["median"],
         3.0, "x"),
        ("one thread, private mutex: cleanup / mincore() of one page",
         res["cleanup"]["private"]["median"] / floor_lookup, 1.0, "x"),
        ("each extra thread of the caller's process (null syscalls)", per_thread, 0.5, ""),
        ("each extra process on the same memfd / a remote 16-byte read (process_vm_readv)",
         per_proc / floor_remote, 1.0, "x"),
        (f"{ufar['tasks']} unrelated idle tasks vs none (slowdown)", ufar["median"] / u0, 1.05,
         "x"),
        (f"exit walk module / built-in, worst of every N and list "
         f"(N={worst_exit['n']}, {worst_exit['kind']})", worst_exit["median"], 1.00, ""),
    ]
    if len(res["churn"]) > 1:
        c0 = min(res["churn"], key=lambda s: s["n"])
        cn = max(res["churn"], key=lambda s: s["n"])
        goals.append((f"thread start + exit, module / built-in, {cn['n']} threads vs "
                      f"{c0['n']} (growth)", cn["median"] / c0["median"], 1.10, "x"))
    if "unmap" in res:
        goals.append(("mmap + munmap of a shared page, no robust lock in it, module / built-in",
                      res["unmap"]["median"], 1.02, "x"))
    if "munmap_private" in res["preload"]:
        goals.append(("preload library: private munmap() with / without",
                      res["preload"]["munmap_private"]["median"], 1.05, "x"))
    p("goals (issues 6, 7, 16 and 17)")
    res["goals"] = []
    for name, v, goal, unit in goals:
        ok = v <= goal
        res["goals"].append({"goal": name, "measured": v, "limit": goal, "met": ok})
        p(f"  {'met   ' if ok else 'MISSED'} {name}: {v:.3f}{unit} (goal <= {goal}{unit})")

    with open(a.out + ".json", "w") as f:
        json.dump(res, f, indent=1)
    with open(a.out + ".rst", "w") as f:
        f.write(rst(res))
    with open(a.out + ".txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    svg(res, a.out + ".svg")
    print("\n".join(lines))
    print(f"written: {a.out}.json {a.out}.txt {a.out}.rst {a.out}.svg")


if __name__ == "__main__":
    main()
