# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Long-running reliability scripts (the CI versions are tests/test_reliability_*.py).

    python benchmarks/soak.py [--minutes 3] [--frequency 99] [--interval 10]      # soak
    python benchmarks/soak.py --fault [--fault-kind down|slow|429|500] [--fault-seconds 300]
    python benchmarks/soak.py --churn [--processes 10000] [--seconds 120]
    python benchmarks/soak.py --lifecycle [--cycles 100]

soak       The pipeline in-process at --frequency with an otlp_http exporter to a local fake
           OTLP receiver, one check run every --interval s, one busy process (a fixed-work
           loop) plus whatever runs on the host. Every run records RSS, samples, export
           errors and losses. Result: RSS slope (MB/hour, least squares after the first
           3 runs), error growth, samples/s of the busy process (should be == frequency).
fault      The same, with the intake failing for --fault-seconds (down = connection
           closed; slow = 12 s per answer; 429 with Retry-After; 500), then healthy again.
           Checks: every profile exported is delivered once the intake is back (within the
           queue budget), RSS bounded, the busy process's samples/s during the fault within
           5% of before.
churn      --processes short-lived processes over --seconds (half of them exec), with
           process_exit_ttl 2 s: no crash, processes.tracked back to its baseline.
lifecycle  --cycles start/cancel cycles of the check: BPF programs, threads, fds, RSS back
           to baseline.
The last line printed is a JSON summary; the exit status is 1 when a goal failed.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.append(os.path.dirname(HERE))  # tests.fakes (after ours: benchmarks/ has its own workloads)

import workloads as w  # noqa: E402


def _busy_pid_samples(profile, pid):
    if profile is None:
        return 0
    return sum(s.value for r in profile.resources if r.pid == pid for s in r.samples)


def _oncpu_s(pid):
    with open('/proc/{}/schedstat'.format(pid)) as f:
        return int(f.read().split()[0]) / 1e9


def _errors(telemetry):
    return sum(v for k, v in telemetry.totals().items() if k.startswith('export.errors'))


def _lost(telemetry):
    return sum(v for k, v in telemetry.totals().items()
               if k.startswith('sampler.lost') and 'user_stack_truncated' not in k)


def run_soak(args, fault=None):
    from tests.fakes.otlp import FakeOtlp

    tmp = tempfile.mkdtemp(prefix='hp-soak-')
    spin = w.build('spin')
    busy = subprocess.Popen([spin, os.path.join(tmp, 'spin.counter')])
    srv = FakeOtlp(decode=False, keep_bodies=False).start()
    exporters = {'otlp_http': [{
        'endpoint': srv.url, 'compression': 'gzip', 'timeout': 5, 'queue_size_mb': args.queue_mb,
        'retry': {'initial_interval': 0.5, 'max_interval': 5, 'max_elapsed_time': 0},
    }]}
    pipeline, telemetry = w.make_pipeline(w.pipeline_instance(tmp, args.frequency, exporters), args.interval)
    rows = []
    exported = 0
    start = time.monotonic()
    total_s = args.minutes * 60
    fault_on = fault_off = None
    if fault:
        fault_on = max(5 * args.interval, min(60.0, total_s / 4))  # a few healthy runs first
        fault_off = fault_on + args.fault_seconds
        total_s = max(total_s, fault_off + args.recovery_seconds)
    state = 'normal'
    last_oncpu = 0.0
    try:
        next_run = time.monotonic()
        while time.monotonic() - start < total_s:
            elapsed = time.monotonic() - start
            if fault and state == 'normal' and elapsed >= fault_on:
                state = 'fault'
                if fault == 'down':
                    srv.close_connection()
                elif fault == 'slow':
                    srv.slow(12.0)
                elif fault == '429':
                    srv.respond(429, retry_after='2')
                else:
                    srv.respond(int(fault))
            elif fault and state == 'fault' and elapsed >= fault_off:
                state = 'recovered'
                srv.reset_behaviour()
            t0 = time.monotonic()
            result = pipeline.run_once()
            took = time.monotonic() - t0
            oncpu = _oncpu_s(busy.pid)
            busy_cpu_s, last_oncpu = oncpu - last_oncpu, oncpu
            if result.profile is not None and result.profile.resources:
                exported += 1
            rows.append({
                't': round(elapsed, 1), 'state': state, 'run_s': round(took, 3),
                'rss_mb': round(w.rss_mb(os.getpid()), 1),
                'busy_samples': _busy_pid_samples(result.profile, busy.pid),
                'busy_cpu_s': round(busy_cpu_s, 3),
                'samples_total': telemetry.total('sampler.samples'),
                'errors': _errors(telemetry), 'lost': _lost(telemetry),
                'queue_bytes': telemetry.gauge_sum('export.queue.bytes'),
                'dropped': telemetry.total('export.queue.dropped'),
                'accepted': len(srv.accepted),
                'symbols_cache_mb': round(telemetry.gauge_sum('symbols.cache.bytes') / 1e6, 2),
                'cfi_cache_mb': round(telemetry.gauge_sum('unwind.cfi.cache.bytes') / 1e6, 2),
                'tables_loaded': telemetry.total('symbols.tables.loaded'),
                'tracked': telemetry.gauge_sum('processes.tracked'),
                'gc_objects': len(gc.get_objects()),
            })
            if args.verbose:
                print(json.dumps(rows[-1]), flush=True)
            next_run += args.interval
            time.sleep(max(0.0, next_run - time.monotonic()))
        flushed = pipeline.flush(120)
    finally:
        w.close_pipeline(pipeline)
        busy.kill()
        busy.wait()
        time.sleep(1)
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    # the first run only starts the sampler; the next two warm the caches
    steady = rows[3:] if len(rows) > 6 else rows[1:]
    # samples of the busy loop per second it spent on a CPU: == frequency when sampling never
    # pauses, whatever CPU share the loop gets on a shared machine
    def rate(rs):
        if not rs:
            return float('nan')
        return sum(r['busy_samples'] for r in rs) / max(1e-9, sum(r['busy_cpu_s'] for r in rs))
    summary = {
        'mode': 'fault:' + fault if fault else 'soak',
        'duration_min': round((time.monotonic() - start) / 60, 1),
        'frequency': args.frequency, 'interval_s': args.interval, 'runs': len(rows),
        'rss_first_mb': steady[0]['rss_mb'] if steady else None,
        'rss_last_mb': rows[-1]['rss_mb'] if rows else None,
        'rss_peak_mb': max(r['rss_mb'] for r in rows) if rows else None,
        'peak_hwm_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
        'rss_slope_mb_per_h': round(w.slope_per_hour([(r['t'], r['rss_mb']) for r in steady]), 2),
        'rss_slope_last_half_mb_per_h': round(w.slope_per_hour(
            [(r['t'], r['rss_mb']) for r in steady[len(steady) // 2:]]), 2),
        'symbols_cache_mb_first_last': ([steady[0]['symbols_cache_mb'], rows[-1]['symbols_cache_mb']]
                                        if steady else None),
        'cfi_cache_mb_first_last': [steady[0]['cfi_cache_mb'], rows[-1]['cfi_cache_mb']] if steady else None,
        # RSS less what the two byte-budgeted caches hold: growth here is not a cache filling up
        'rss_minus_cache_slope_mb_per_h': round(w.slope_per_hour(
            [(r['t'], r['rss_mb'] - r['symbols_cache_mb'] - r['cfi_cache_mb']) for r in steady]), 2),
        'gc_objects_first_last': [steady[0]['gc_objects'], rows[-1]['gc_objects']] if steady else None,
        'run_s_median': w.median([r['run_s'] for r in steady]),
        'errors_total': rows[-1]['errors'] if rows else None,
        'lost_total': rows[-1]['lost'] if rows else None,
        'profiles_exported': exported,
        'profiles_accepted': len(srv.accepted),
        'dropped': rows[-1]['dropped'] if rows else None,
        'flushed': flushed,
        'lost_by_reason': {k: v for k, v in telemetry.totals().items() if k.startswith('sampler.lost') and v},
        'samples_total': telemetry.total('sampler.samples'),
    }
    if fault:
        normal = [r for r in steady if r['state'] == 'normal']
        during = [r for r in rows if r['state'] == 'fault'][1:]  # skip the run where it switched
        summary['busy_samples_per_cpu_s_normal'] = round(rate(normal), 2)
        summary['busy_samples_per_cpu_s_fault'] = round(rate(during), 2)
        summary['busy_samples_per_cpu_s_after'] = round(rate([r for r in rows if r['state'] == 'recovered'][1:]), 2)
        summary['fault_seconds'] = args.fault_seconds
        summary['max_queue_mb'] = round(max(r['queue_bytes'] for r in rows) / 1e6, 2)
        summary['busy_samples_per_cpu_s_expected'] = args.frequency
        # (no steady run before the fault, as in a --minutes 1 smoke run: nothing to compare with)
        ok_rate = (summary['busy_samples_per_cpu_s_normal'] > 0
                   and abs(summary['busy_samples_per_cpu_s_fault'] / summary['busy_samples_per_cpu_s_normal'] - 1) <= 0.05
                   and abs(summary['busy_samples_per_cpu_s_fault'] / args.frequency - 1) <= 0.05)
        summary['ok'] = bool(ok_rate and summary['profiles_accepted'] >= exported and not summary['dropped'])
    else:
        first_errors = steady[0]['errors'] if steady else 0
        summary['error_growth'] = (rows[-1]['errors'] - first_errors) if rows else None
        summary['busy_samples_per_cpu_s'] = round(rate(steady), 2)
        summary['ok'] = bool(abs(summary['rss_slope_mb_per_h']) < 5 and summary['error_growth'] == 0)
    return summary


def run_churn(args):
    tmp = tempfile.mkdtemp(prefix='hp-churn-')
    # a comm of our own, so that other processes on the host are told apart from ours
    churn = os.path.join(tmp, 'chrs{}'.format(os.getpid() % 100000))
    shutil.copy(w.build('churn'), churn)
    comm = os.path.basename(churn)
    pipeline, telemetry = w.make_pipeline(w.pipeline_instance(tmp, args.frequency, process_exit_ttl=2.0), 2.0)
    try:
        pipeline.run_once()
        time.sleep(3)
        pipeline.run_once()
        baseline = telemetry.gauge_sum('processes.tracked')
        registry0 = len(pipeline.receiver.registry)
        half = args.processes // 2
        p1 = subprocess.Popen([churn, str(half), str(args.seconds), '1'], stdout=subprocess.PIPE, text=True)
        p2 = subprocess.Popen([churn, str(args.processes - half), str(args.seconds), '1', churn],
                              stdout=subprocess.PIPE, text=True)
        peak = 0
        while p1.poll() is None or p2.poll() is None:
            pipeline.run_once()
            peak = max(peak, telemetry.gauge_sum('processes.tracked'))
            time.sleep(2)
        started = sum(int((p.stdout.read() or 'done 0').split()[-1]) for p in (p1, p2))
        after = None
        ours_left = []
        for _ in range(15):
            time.sleep(2)
            pipeline.run_once()
            after = len(pipeline.receiver.registry)
            ours_left = [i.pid for i in pipeline.receiver.registry if i.comm == comm]
            if not ours_left and after <= registry0 + 5:
                break
        running = pipeline.receiver is not None and pipeline.receiver.running
        summary = {
            'mode': 'churn', 'processes_started': started, 'seconds': args.seconds,
            'tracked_baseline': baseline, 'tracked_peak': peak, 'registry_baseline': registry0,
            'registry_after_ttl': after, 'exec_events': telemetry.total('processes.exec_events'),
            'exit_events': telemetry.total('processes.exit_events'),
            'gone_before_metadata': telemetry.total('processes.gone_before_metadata'),
            'sampler_running': running, 'rss_mb': round(w.rss_mb(os.getpid()), 1),
            'ours_left_after_ttl': len(ours_left),
        }
        # every churn process forgotten; the registry back near its baseline (other processes
        # of a shared host come and go as well)
        summary['ok'] = bool(running and after is not None and not ours_left
                             and after - registry0 < (peak - registry0) / 2)
        return summary
    finally:
        w.close_pipeline(pipeline)
        shutil.rmtree(tmp, ignore_errors=True)


def run_lifecycle(args):
    from datadog_checks.host_profiler import HostProfilerCheck

    tmp = tempfile.mkdtemp(prefix='hp-life-')
    os.makedirs(os.path.join(tmp, 'diag'), exist_ok=True)
    instance = w.pipeline_instance(tmp, args.frequency)
    instance['min_collection_interval'] = 1

    def threads():
        return sorted(t.name for t in threading.enumerate() if t is not threading.current_thread())

    def one_cycle():
        check = HostProfilerCheck('host_profiler', {}, [dict(instance)])
        check.run()
        time.sleep(0.1)
        rx = check.pipeline.receiver
        if rx is None or not rx.running:
            raise RuntimeError('cycle did not sample: {}'.format(check.last_result))
        progs.update(rx.program_ids())
        check.run()
        check.cancel()
        # cancel() does not wait; the next instance can take the host lock once the thread is gone
        t = time.monotonic()
        if not rx.join(15):
            raise RuntimeError('sampler thread did not exit within 15 s')
        exit_s.append(time.monotonic() - t)
        return check

    progs, exit_s = set(), []
    progs0, threads0, fds0 = w.bpf_prog_ids(), threads(), w.fd_count()
    one_cycle()  # warm imports, caches
    time.sleep(1)
    gc.collect()
    rss0 = w.rss_mb(os.getpid())
    rss_series = []
    t0 = time.monotonic()
    for i in range(args.cycles):
        one_cycle()
        rss_series.append((time.monotonic() - t0, w.rss_mb(os.getpid())))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (threads() != threads0 or progs & set(w.bpf_prog_ids())):
        time.sleep(0.2)
    gc.collect()
    summary = {
        'mode': 'lifecycle', 'cycles': args.cycles, 'seconds': round(time.monotonic() - t0, 1),
        'bpf_progs_before': len(progs0), 'bpf_progs_after': len(w.bpf_prog_ids()),
        'our_progs_seen': len(progs),
        'leftover_progs': sorted(progs & set(w.bpf_prog_ids())),
        'cancel_to_exit_s_median': round(w.median(exit_s), 3), 'cancel_to_exit_s_max': round(max(exit_s), 3),
        'threads_before': threads0, 'threads_after': threads(),
        'fds_before': fds0, 'fds_after': w.fd_count(),
        'rss_after_warmup_mb': round(rss0, 1), 'rss_after_mb': round(w.rss_mb(os.getpid()), 1),
        'rss_slope_mb_per_100_cycles': round(w.slope_per_hour(
            [(i, v) for i, (_, v) in enumerate(rss_series)]) / 3600 * 100, 2),
    }
    summary['ok'] = bool(not summary['leftover_progs'] and summary['threads_after'] == threads0
                         and summary['fds_after'] <= fds0 + 2 and summary['rss_after_mb'] - rss0 < 20)
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument('--fault', action='store_true')
    mode.add_argument('--churn', action='store_true')
    mode.add_argument('--lifecycle', action='store_true')
    ap.add_argument('--minutes', type=float, default=3.0, help='soak length (default 3; the goal run is 30)')
    ap.add_argument('--frequency', type=int, default=99)
    ap.add_argument('--interval', type=float, default=10.0)
    ap.add_argument('--queue-mb', type=float, default=64)
    ap.add_argument('--fault-kind', default='down', choices=['down', 'slow', '429', '500', '503'])
    ap.add_argument('--fault-seconds', type=float, default=300)
    ap.add_argument('--recovery-seconds', type=float, default=60, help='healthy time after the fault')
    ap.add_argument('--processes', type=int, default=10000)
    ap.add_argument('--seconds', type=float, default=120)
    ap.add_argument('--cycles', type=int, default=100)
    ap.add_argument('--verbose', '-v', action='store_true')
    args = ap.parse_args()
    if args.fault:
        summary = run_soak(args, fault=args.fault_kind)
    elif args.churn:
        summary = run_churn(args)
    elif args.lifecycle:
        summary = run_lifecycle(args)
    else:
        summary = run_soak(args)
    summary['machine'] = w.machine()
    print(json.dumps(summary))
    return 0 if summary.get('ok') else 1


if __name__ == '__main__':
    sys.exit(main())
