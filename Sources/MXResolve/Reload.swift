import Dispatch
import Logging
import MXCore

/// SIGHUP: read the config file (with the same command-line flags on top) again and apply what
/// changed to the running daemon, keeping the cache and every connection.
extension Daemon {
    /// What a reload changes in place. Every other setting is read at start only: the log says
    /// which of them changed and that they wait for a restart.
    static let reloadableKeys: Set<String> = [
        "log-level", "dns-server", "allow-ip", "deny-ip", "ca-file", "wellknown-timeout-ms", "resolution-timeout-ms",
    ]

    func reload() {
        notifier?.send("RELOADING=1\nMONOTONIC_USEC=\(monotonicMicroseconds())\nSTATUS=reloading the config file")
        defer { notifier?.send("READY=1\nSTATUS=\(statusLine)") }
        guard let reread else {
            logger.warning("SIGHUP: this daemon was started without a way to re-read its settings")
            return
        }
        let wanted: DaemonConfig
        do {
            wanted = try reread()
        } catch {
            logger.error("reload failed; the running settings stay: \(error)")
            return
        }
        let running = runningConfig.withLock { $0 }
        let changed = DaemonConfig.settings.filter { $0.values(running) != $0.values(wanted) }
        guard !changed.isEmpty else {
            logger.info("reloaded: no setting changed")
            return
        }
        var applied = running
        for setting in changed {
            guard Self.reloadableKeys.contains(setting.key) else {
                logger.warning("\(setting.key) changed; it takes effect at the next restart", metadata: [
                    "running": "\(setting.values(running).joined(separator: ","))",
                    "configured": "\(setting.values(wanted).joined(separator: ","))",
                ])
                continue
            }
            if let problem = apply(setting.key, from: wanted, to: &applied) {
                logger.error("reload: \(setting.key) not changed: \(problem)")
            } else {
                logger.info("reload: \(setting.key) = \(setting.values(applied).joined(separator: ","))")
            }
        }
        if changed.contains(where: { $0.key == "allow-ip" || $0.key == "deny-ip" }) {
            logger.notice("new resolutions use the new address lists; cached answers keep theirs until they expire (mxresolvectl flush-caches drops them now)")
        }
        runningConfig.withLock { $0 = applied }
        var resolver = service.resolver.settings
        resolver.ipPolicy = applied.ipPolicy
        resolver.wellKnownTotalTimeoutMs = applied.wellKnownTimeoutMs
        resolver.resolutionTimeoutMs = applied.resolutionTimeoutMs
        resolver.dnsLookupMaxMs = applied.dnsLookupMaxMs
        service.resolver.settings = resolver
    }

    /// Copies one setting from `wanted` into `applied` once the running part took it; returns why not.
    private func apply(_ key: String, from wanted: DaemonConfig, to applied: inout DaemonConfig) -> String? {
        switch key {
        case "log-level":
            guard let level = Logger.Level(rawValue: wanted.logLevel) else { return "unknown level \(wanted.logLevel)" }
            logLevel?.value = level
            applied.logLevel = wanted.logLevel
        case "dns-server":
            // c-ares reads resolv.conf only when its channel is made.
            guard !wanted.dnsServers.isEmpty else { return "going back to the system's resolv.conf needs a restart" }
            if let problem = setDNSServers(wanted.dnsServers.compactMap(DaemonConfig.parseDNSServer)) { return problem }
            applied.dnsServers = wanted.dnsServers
        case "ca-file":
            if let problem = backend.setExtraCAFile(wanted.caFile) { return problem }
            applied.caFile = wanted.caFile
        case "allow-ip", "deny-ip":
            applied.allowIP = wanted.allowIP
            applied.denyIP = wanted.denyIP
        case "wellknown-timeout-ms":
            applied.wellKnownTimeoutMs = wanted.wellKnownTimeoutMs
        case "resolution-timeout-ms":
            applied.resolutionTimeoutMs = wanted.resolutionTimeoutMs
        default:
            return "not reloadable"
        }
        return nil
    }

    /// Waits (bounded) for the DNS thread to take the new servers.
    private func setDNSServers(_ servers: [String]) -> String? {
        let done = DispatchSemaphore(value: 0)
        let outcome = ReloadOutcome()
        backend.setDNSServers(servers) { problem in
            outcome.set(problem)
            done.signal()
        }
        guard done.wait(timeout: .now() + 5) == .success else { return "the DNS thread did not answer within 5 s" }
        return outcome.value
    }
}

/// One answer handed from the DNS thread to the reload.
private final class ReloadOutcome: Sendable {
    private let lock = PthreadMutex<String?>(nil)
    func set(_ problem: String?) { lock.withLock { $0 = problem } }
    var value: String? { lock.withLock { $0 } }
}
