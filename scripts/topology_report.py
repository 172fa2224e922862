"""The figures and the Markdown of scripts/topology.py: one replica stopped under load (what the clients saw,
what HAProxy's log and the replica's gauge say it held), sessions across replicas, throughput."""

from __future__ import annotations

from collections import Counter
from typing import Any

from scripts.balancer import Logged
from scripts.lifecycle_common import percentiles


def _outcome(e: Logged) -> str:
    if e.redispatched:
        return f"{e.status} replayed on another replica"
    return f"{e.status} at {e.server}" + ("" if e.ok else f", cut short ({e.state})")


def summarise_fault(run: dict[str, Any]) -> dict[str, Any]:
    """Failed requests (wrk's count: connection errors, timeouts, non-2xx) against the requests the stopped
    replica held at the signal. "Held" comes from HAProxy's log: requests it had received before the signal
    and not yet answered at it, which it had forwarded to the victim (answered by it later, failed there, or
    replayed on another replica: "+N" retries). A request received just before the signal and forwarded just
    after it (refused, replayed) counts too: a few ms of slack. The replica's own gauge (requests inside its
    handlers, scraped just before the signal) undercounts: it misses requests being read or queued in its loop."""
    wall, victim, wrk = run["wall_signal"], run["victim"], run["wrk"]
    api = [e for e in run["log"] if e.backend == "api" and e.path.startswith("/v1/recommend")
           and e.end_s >= run["wall_start"]]  # fmt: skip
    before, after = [e for e in api if e.end_s < wall], [e for e in api if e.start_s > wall]
    held = [e for e in api if e.start_s <= wall < e.end_s and (e.server == victim or e.redispatched)]
    down = next((t for t, st in run["states"] if st.startswith(("DOWN", "MAINT"))), None)
    return {
        "signal": run["signal"],
        "victim": victim,
        "requests": wrk["requests"],
        "requests_before_signal": len(before),
        "failed": wrk["errors"],
        "failed_non2xx": wrk["non2xx"],
        # C...: the client closed (wrk's connections, at the end of its run); not a failure of the service
        "failed_in_haproxy_log": dict(Counter(f"{e.status} {e.state} at {e.server}" for e in api
                                              if not e.ok and not e.state.startswith("C"))),  # fmt: skip
        "client_closed_at_end_of_run": sum(e.state.startswith("C") for e in api),
        "wrk_socket_errors": wrk.get("socket_errors"),
        "held_by_victim_at_signal": len(held),
        "held_outcomes": dict(Counter(_outcome(e) for e in held)),
        "victim_inflight_gauge": run["gauge"],
        "gauge_scraped_ms_before_signal": run["gauge_scraped_ms_before"],
        "inflight_at_signal_all_replicas": sum(e.start_s <= wall < e.end_s for e in api),
        "sent_to_victim_after_signal_then_replayed": sum(e.retries > 0 for e in after),
        "answered_by_victim_after_signal": sum(e.server == victim and e.ok for e in after),
        "haproxy_marked_down_after_s": down,
        "served_by_before": dict(Counter(e.server for e in before)),
        "served_by_after": dict(Counter(e.server for e in after)),
        "latency_before": percentiles([e.end_s - e.start_s for e in before if e.ok]),
        "latency_after": percentiles([e.end_s - e.start_s for e in after if e.ok]),
        "returncode": run["returncode"],
        "criterion_met": wrk["errors"] <= len(held) if run["signal"] == "SIGKILL" else wrk["errors"] == 0,
    }


def _fault_lines(f: dict[str, Any], what: str) -> list[str]:
    crit = "failures <= requests it held" if f["signal"] == "SIGKILL" else "0 failures"
    return [
        f"### {f['signal']} to {f['victim']} under load ({what})",
        "",
        f"- requests: {f['requests']} ({f['requests_before_signal']} before the signal); served by "
        f"{f['served_by_before']} before, {f['served_by_after']} after",
        f"- **failed: {f['failed']}** (wrk: non-2xx {f['failed_non2xx']}, socket errors {f['wrk_socket_errors']}; "
        f"HAProxy's log: {f['failed_in_haproxy_log'] or 'none'}); **held by {f['victim']} at the signal: "
        f"{f['held_by_victim_at_signal']}** (HAProxy's log) -> {f['held_outcomes']}; its own in-flight gauge "
        f"{f['victim_inflight_gauge']} (scraped {f['gauge_scraped_ms_before_signal']} ms before); in flight "
        f"through HAProxy on all replicas: {f['inflight_at_signal_all_replicas']}",
        f"- criterion ({crit}): **{'met' if f['criterion_met'] else 'NOT MET'}**",
        f"- HAProxy marked {f['victim']} down {f['haproxy_marked_down_after_s']} s after the signal; requests "
        f"sent to it after the signal and replayed on another replica: "
        f"{f['sent_to_victim_after_signal_then_replayed']}; answered by it after the signal: "
        f"{f['answered_by_victim_after_signal']}; exit code {f['returncode']}",
        *([f"- '200 at {f['victim']}' among the held requests: answers the replica had begun to send when the signal "
            "landed; HAProxy cannot replay a request whose answer it has started to forward, so one cut short (SD: "
            "the server closed during the body) reaches the client as a broken connection (wrk: a read error)"]
          if f["signal"] == "SIGKILL" and any(" at " in k for k in f["held_outcomes"]) else []),
        f"- latency (HAProxy's, request received to answer sent) before {f['latency_before']}, after "
        f"{f['latency_after']}",
        "",
    ]


def _per_replica_core(run: dict[str, Any]) -> float:
    cores = sum(c for p, c in run["cpu_cores"].items() if p.startswith("r"))
    return float(run["rps"] / cores) if cores else 0.0


def _throughput_lines(t: dict[str, Any], n: int) -> list[str]:
    m = {name: x["rps"] for name, x in t["median"].items()}
    rows = [f"| {name.replace('_', ' ')} | {x['rps']:,.0f} | {x['p50_ms']:.1f} | {x['p99_ms']:.1f} | {x['errors']} | "
            f"{', '.join(f'{r:,.0f}' for r in t['rps_per_round'][name])} |" for name, x in t["median"].items()]  # fmt: skip
    scale, hop = m[f"haproxy_{n}_replicas"] / m["haproxy_1_replica"], m["haproxy_1_replica"] / m["direct_1_replica"]
    return [
        f"### Throughput (wrk, {t['connections']} connections, {t['duration_s']} s per run, {t['rounds']} "
        "alternating rounds, median round by req/s)",
        "",
        "| target | req/s | p50 ms | p99 ms | errors | req/s per round |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "CPU used during the median run, in cores (of 2): "
        + "; ".join(f"{name.replace('_', ' ')}: " + ", ".join(f"{p} {c:.2f}" for p, c in x["cpu_cores"].items())
                    for name, x in t["median"].items()) + ". Requests per CPU-second of the replicas: "
        + ", ".join(f"{name.replace('_', ' ')} {_per_replica_core(x):,.0f}" for name, x in t["median"].items())
        + " (a replica batches the requests waiting for it: fewer per replica, smaller batches, more CPU each).",
        "",
        f"{n} replicas vs 1 behind HAProxy: **{scale:.2f}x**; HAProxy with 1 replica vs the replica direct: "
        f"**{hop:.2f}x** (compare with the spread of the rounds). {n} replicas on 2 cores cannot double "
        "throughput: each replica is one Python event loop (a core at most), and wrk and HAProxy run on the "
        "same two cores (other engineers' jobs too: see the load average above), so a second replica can only take "
        "what the driver, the balancer and the first replica leave. The balancer's own cost is the extra hop and its CPU on these "
        "same cores; a ratio near 1 means it is within the noise of a shared machine, not that it is free.",
        "",
    ]


def table(s: dict[str, Any]) -> list[str]:
    se = s["sessions"]
    n = s["settings"]["replicas"]
    lines = [
        f"One redis-server, {n} API replicas (`python -m service`, LLM: {s['settings']['llm']}), HAProxy 2.6 "
        f"({s['settings']['balance']}, /readyz checked every {s['settings']['check_ms']} ms, fall 2 rise 1, timeout "
        f"connect {s['settings']['connect_ms']} ms; "
        "replays on conn-failure and empty-response, redispatched to another replica, for reads and POST "
        "/v1/recommend without a session only: scripts/balancer.py). Every process runs on loopback (no network "
        "namespaces) and shares the machine's cores with the load driver (wrk; Python clients for the sessions).",
        "",
        f"### Sessions across replicas: **{se['read_via_balancer']}/{se['sessions']} read back correctly** "
        f"through the balancer",
        "",
        f"Created through r1: {se['created_via_r1']}, appended to through r2 (r2 answered the whole history): "
        f"{se['appended_via_r2']}, read back exactly (order kept) through r1: {se['read_via_r1']}, through r2: "
        f"{se['read_via_r2']}, through the balancer: {se['read_via_balancer']}.",
        "",
    ]
    if "llm" in s:
        llm = s["llm"]
        lines += [f"### One LLM server for every replica: explained answers **{'all ok' if llm['all_ok'] else 'NOT all ok'}**",
                  "", f"{llm['per_target']} requests (k=3, explain=true, distinct histories) through each replica's own "
                  f"port and through the balancer; explanation_status per target: {llm['status']}; slowest answer "
                  f"{llm['slowest_s']} s (the LLM on these same 2 CPU cores).", ""]
    if "throughput" in s:
        lines += _throughput_lines(s["throughput"], n)
    if "sigterm" in s:
        lines += _fault_lines(s["sigterm"], f"drain {s['settings']['drain']} s")
    if "restart_to_back_in_rotation_s" in s:
        lines += [f"Restarted on its port: back in HAProxy's rotation after {s['restart_to_back_in_rotation_s']} s "
                  "(mostly the replica's own start).", ""]
    if "sigkill" in s:
        lines += _fault_lines(s["sigkill"], "a crash")
    lines += [
        "What a replica holds swings within milliseconds: it encodes in micro-batches, so the requests routed to it "
        "are answered together and the next ones arrive a moment later; the gauge and the signal are a few ms "
        "apart. A SIGKILLed replica also takes ~0.1 s to die (the kernel frees its memory): requests sent to it "
        "meanwhile are accepted, then reset, and replayed like the ones it held; they are counted under \"sent to it "
        "after the signal and replayed\", with the connections refused before HAProxy marked it down.",
        "",
    ]
    return lines
