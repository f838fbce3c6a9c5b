import MXCore
import MXAdapters
import MXProtocol

/// The daemon's metrics in the Prometheus text format (docs/metrics.md lists them): counters since
/// start, whatever `reset-statistics` did, so rates over them stay right; gauges as they are now.
public struct DaemonMetrics: Sendable {
    public var stats: Statistics
    public var network: NetworkCounters
    public var cache: CacheStoreStatistics
    public var cacheMemoryEntries: Int
    public var resolutionsInflight: Int

    public var text: String {
        var p = PrometheusText()
        p.family("mxresolved_build_info", .gauge, help: "Always 1; the version of the running daemon.")
        p.sample("mxresolved_build_info", [("version", Wire.serverVersion)], 1)
        p.family("mxresolved_start_time_seconds", .gauge, help: "When the daemon started, seconds since the Unix epoch.")
        p.sample("mxresolved_start_time_seconds", [], String(Int(stats.started)))

        p.single("mxresolved_requests_total", .counter, help: "Request lines read from clients, every verb.", stats.requests.sinceStart)
        p.single("mxresolved_protocol_errors_total", .counter, help: "Request lines refused before their verb ran (bad_request, unknown_verb, line_too_long, too_many_in_flight).",
                 stats.protocolErrors.sinceStart)
        p.labelled("mxresolved_resolve_requests_total", .counter, help: "resolve requests by whether the cache answered them.", label: "cache",
                   [("hit", stats.hits.sinceStart), ("miss", stats.misses.sinceStart)])
        p.single("mxresolved_resolve_errors_total", .counter, help: "resolve requests that missed the cache and were answered with a failure.",
                 stats.errors.sinceStart)
        p.single("mxresolved_stale_answers_total", .counter, help: "resolve answers served stale (the last good answer, while its name fails temporarily).",
                 stats.stale.sinceStart)
        p.single("mxresolved_coalesced_requests_total", .counter, help: "Requests that joined a resolution of the same name already in flight.",
                 stats.coalesced.sinceStart)
        p.histogram("mxresolved_resolve_duration_seconds", help: "Time from reading a resolve request to writing its answer, by whether the cache answered it.",
                    bounds: LatencyHistogram.bounds,
                    series: [([("cache", "hit")], stats.hitLatency.sinceStart), ([("cache", "miss")], stats.missLatency.sinceStart)])

        p.labelled("mxresolved_resolutions_total", .counter, help: "Resolutions that produced an answer, by the spec step that produced it.",
                   label: "step", stats.byStep.labels.map { ($0.rawValue, stats.byStep[$0].sinceStart) })
        p.labelled("mxresolved_resolution_failures_total", .counter, help: "Resolutions that ended in a failure, by its code.",
                   label: "code", stats.byFailure.labels.map { ($0.rawValue, stats.byFailure[$0].sinceStart) })
        p.labelled("mxresolved_resolution_warnings_total", .counter, help: "Resolutions that succeeded despite a deviation from the spec, by warning.",
                   label: "warning", stats.byWarning.labels.map { ($0.rawValue, stats.byWarning[$0].sinceStart) })
        p.single("mxresolved_stale_revalidations_total", .counter, help: "Background resolutions of names served stale.", stats.staleRevalidations.sinceStart)
        p.single("mxresolved_stale_given_up_total", .counter, help: "Stale answers dropped because their grace ran out while the name still failed.",
                 stats.staleGivenUp.sinceStart)
        p.labelled("mxresolved_reresolve_requests_total", .counter, help: "reresolve requests, by whether they started a resolution or were rate-limited.",
                   label: "started", [("yes", stats.reresolveStarted.sinceStart), ("no", stats.reresolveLimited.sinceStart)])
        p.single("mxresolved_resolutions_inflight", .gauge, help: "Resolutions in flight now.", resolutionsInflight)

        p.labelled("mxresolved_dns_queries_total", .counter, help: "DNS queries sent upstream (AAAA and A count apart), by result.",
                   label: "result", network.dnsByResult)
        p.single("mxresolved_dns_failovers_total", .counter, help: "DNS queries handed on to a further server after a SERVFAIL, REFUSED or timeout.",
                 network.dnsFailovers)
        p.single("mxresolved_hosts_file_answers_total", .counter, help: "Address lookups answered from the hosts file (no query sent).",
                 network.hostsFileAnswers)
        p.labelled("mxresolved_wellknown_fetches_total", .counter, help: "HTTPS fetches of /.well-known/matrix/server, by result (an HTTP error status is ok).",
                   label: "result", network.httpsByResult)

        p.single("mxresolved_cache_entries", .gauge, help: "Entries in the LMDB cache (answers and remembered failures).", cache.entries)
        p.single("mxresolved_cache_memory_entries", .gauge, help: "Decoded cache entries held in memory.", cacheMemoryEntries)
        p.single("mxresolved_cache_used_bytes", .gauge, help: "Bytes the LMDB cache's entries occupy.", cache.usedBytes)
        p.single("mxresolved_cache_map_size_bytes", .gauge, help: "The LMDB cache's upper bound (cache-map-size-mb).", cache.capacityBytes)
        p.single("mxresolved_cache_evictions_total", .counter, help: "Cache entries removed to make room in a full map.", cache.evictions)

        p.single("mxresolved_connections", .gauge, help: "Client connections open now.", stats.connections.load(ordering: .relaxed))
        p.single("mxresolved_connections_accepted_total", .counter, help: "Client connections accepted.", stats.connectionsAccepted.sinceStart)
        return p.text
    }
}
