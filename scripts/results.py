#!/usr/bin/env python3
"""Turns a guest console log and the host checks into test results.

The guest frames each KTAP document (harness runs, KUnit suites) with "@@@ BEGIN name" and
"@@@ END name rc=N". Each document is parsed by the kernel tree's own `kunit.py parse`; the
log itself is checked for a clean run (both CPUs up, module loaded and unloaded, no oops,
warning or lockdep splat). Prints every result, then "N passed, N failed"; exits 1 on any
failure. A skipped test counts as failed: every check here is expected to run.
"""
import argparse
import json
import os
import re
import subprocess
import sys

# What a clean guest log must not contain.
SPLATS = re.compile(
    r"BUG:|WARNING:|Oops|Kernel panic|general protection fault|Call Trace:|"
    r"possible circular locking|possible recursive locking|inconsistent lock state|"
    r"suspicious RCU usage|sleeping function called from invalid context|"
    r"UBSAN|kernel BUG|INFO: task .* blocked|DEADLOCK|unreferenced object 0x")

# Sections the check mode must produce, and how their results are named.
HARNESS = ["harness-c", "harness-rust", "switch-walkers", "index-at-load", "calls-during-load",
           "harness-scan", "harness-c-after-rmmod", "fuzz"]


def sections(log):
    found, cur, lines = {}, None, []
    for line in log.splitlines():
        line = line.rstrip("\r")
        m = re.match(r".*@@@ BEGIN (\S+)$", line)
        if m:
            cur, lines = m.group(1), []
            continue
        m = re.match(r".*@@@ END (\S+) rc=(\d+)$", line)
        if m and cur == m.group(1):
            found[cur] = ("\n".join(lines) + "\n", int(m.group(2)))
            cur = None
            continue
        if cur:
            lines.append(line)
    return found


def leaf_cases(group, prefix=""):
    for case in group.get("test_cases", []):
        yield case["name"], case["status"]
    for sub in group.get("sub_groups", []):
        yield from leaf_cases(sub, prefix)


def parse_ktap(kunit_py, name, text, outdir):
    src = os.path.join(outdir, name + ".ktap")
    dst = os.path.join(outdir, name + ".json")
    with open(src, "w") as f:
        f.write(text)
    src, dst = os.path.abspath(src), os.path.abspath(dst)
    proc = subprocess.run([sys.executable, kunit_py, "parse", "--json=" + dst, src],
                          capture_output=True, text=True)
    with open(os.path.join(outdir, name + ".parse.txt"), "w") as f:
        f.write(proc.stdout + proc.stderr)
    if not os.path.exists(dst):
        return None, proc.stdout + proc.stderr
    with open(dst) as f:
        return list(leaf_cases(json.load(f))), proc.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True)
    ap.add_argument("--kunit-py", required=True)
    ap.add_argument("--host", help="TSV of host checks: name, PASS|FAIL, detail")
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--kmemleak", action="store_true",
                    help="the kernel has kmemleak: the guest's final scan must be in the log")
    args = ap.parse_args()
    os.makedirs(args.outdir, exist_ok=True)

    results = []  # (name, passed, detail)

    def add(name, passed, detail=""):
        results.append((name, bool(passed), detail))

    if args.host and os.path.exists(args.host):
        with open(args.host) as f:
            for line in f:
                name, status, detail = (line.rstrip("\n").split("\t") + ["", ""])[:3]
                add("host/" + name, status == "PASS", detail)

    log = open(args.log, errors="replace").read()
    found = sections(log)
    m = re.search(r"@@@ guest: mode=\S+ cpus=(\d+)", log)
    add("guest/boots_with_2_cpus", m and m.group(1) == "2",
        "cpus=%s" % (m.group(1) if m else "none: the guest did not boot"))
    add("guest/completed", "@@@ guest: done" in log, "the guest did not reach the end of /init")
    splats = sorted({l.strip() for l in log.splitlines() if SPLATS.search(l)})
    add("guest/no_oops_or_lockdep_splat", not splats, "; ".join(splats[:5]))
    if args.kmemleak:
        m = re.search(r"@@@ kmemleak: (\d+) suspected leaks", log)
        add("guest/kmemleak_scan_clean", m and m.group(1) == "0",
            "%s suspected leaks" % m.group(1) if m else "no kmemleak scan in the log")
    for step in ("insmod", "rmmod", "insmod-scan", "rmmod-scan"):
        rc = found.get(step, (None, None))[1]
        add("guest/" + step, rc == 0, "rc=%s" % rc)
    kunit = [s for s in found if s.startswith("kunit-")]
    add("guest/kunit_suites_ran", kunit, "no KUnit suite results in the log")
    add("guest/kernel_crate_doctests_ran", "kunit-rust_doctests_kernel" in kunit,
        "no rust_doctests_kernel results (CONFIG_RUST_KERNEL_DOCTESTS)")
    add("guest/series_kunit_suite_ran", "kunit-robust_futex_file_key" in kunit,
        "no robust_futex_file_key results (CONFIG_FUTEX_ROBUST_KUNIT_TEST, patch 0012)")
    selftests = sorted(s for s in found if s.startswith("selftest-"))
    # The kernel's futex selftests ran, robust_list among them, with and without the module.
    for want in ("selftest-robust_list", "selftest-robust_list-module"):
        add("guest/ran_" + want, want in selftests,
            "not in the log (ran: %s)" % ", ".join(selftests))
    expected = HARNESS + kunit + selftests

    per_walker = {}
    for sec in expected:
        if sec not in found:
            add(sec + "/present", False, "section missing from the guest log")
            continue
        cases, out = parse_ktap(args.kunit_py, sec, found[sec][0], args.outdir)
        if cases is None:
            add(sec + "/parse", False, out.strip()[-300:])
            continue
        if not cases:
            if os.environ.get("RF_FILTER") and sec in HARNESS and found[sec][1] == 0:
                continue  # the filter selected none of this harness section's cases
            add(sec + "/ran_tests", False, "kunit.py parse found no test")
        per_walker[sec] = dict(cases)
        for case, status in cases:
            add("%s/%s" % (sec, case), status == "PASS", status)
        if found[sec][1] != 0 and all(status == "PASS" for _, status in cases):
            add(sec + "/exit_status", False, "rc=%d with every test passed" % found[sec][1])

    # The stepped race with mainline's merged unlock ran (it needs the vDSO's try_unlock).
    if not os.environ.get("RF_FILTER"):
        for sec in ("harness-c", "harness-rust"):
            want = {"stepped_munmap_merged", "stepped_shared_merged", "stepped_merged_contended"}
            missing = sorted(want - set(per_walker.get(sec, {})))
            add("%s/ran_stepped_merged" % sec, not missing, "missing: " + ", ".join(missing))

    c, r = per_walker.get("harness-c"), per_walker.get("harness-rust")
    if c is not None and r is not None:
        # The cases both runs have are the exit-walk cases; cleanup_robust_list() cases run
        # only with the module, the ENOSYS case only without.
        common = set(c) & set(r)
        diff = sorted(k for k in common if c[k] != r[k])
        add("walkers_agree", common and not diff,
            "differ: " + ", ".join("%s (C %s, Rust %s)" % (k, c[k], r[k]) for k in diff)
            if common else "no case ran with both walkers")

    failed = [x for x in results if not x[1]]
    for name, ok, detail in results:
        print("%s %s%s" % ("ok    " if ok else "FAILED", name,
                           "" if ok or not detail else "  -- " + detail))
    print("%d passed, %d failed" % (len(results) - len(failed), len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
