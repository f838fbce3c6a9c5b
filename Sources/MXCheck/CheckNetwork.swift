import Dispatch
import MXCore
import MXAdapters
import MXProtocol

/// Asks the daemon to resolve: the check sees exactly what a worker would get (the daemon's DNS
/// servers, deny and allow lists, well-known rules), resolved afresh with its trail of lookups.
public struct DaemonResolver: Sendable {
    public let socketPath: String
    public init(socketPath: String) { self.socketPath = socketPath }

    public func resolve(_ name: String, timeoutMs: Int) -> Result<JSONValue, DaemonProblem> {
        let request = Request(.resolve, [name], options: [.cache: "no", .trace: "yes", .format: "json"])
        do {
            let client = try ControlClient(path: socketPath, timeoutSeconds: max(1, (timeoutMs + 999) / 1000))
            guard let line = try client.request(request).last else { return .failure(DaemonProblem("no answer")) }
            do { return .success(try JSONValue.parse(line)) } catch {
                return .failure(DaemonProblem("the daemon's answer is not JSON: \(error)"))
            }
        } catch {
            return .failure(DaemonProblem("\(error)"))
        }
    }

    /// The CA file the daemon trusts besides the system store (`version` reports it).
    public func caFile() -> String? {
        guard let client = try? ControlClient(path: socketPath, timeoutSeconds: 5),
              let line = try? client.request(Request(.version)).last else { return nil }
        let value = ResponseLine(line)["ca_file"]
        return value?.isEmpty == false ? value : nil
    }
}

public struct DaemonProblem: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// HTTPS GETs pinned to one address each, through the same libcurl adapter the daemon uses.
final class PinnedHTTPS: Sendable {
    let backend: NetworkBackend

    init(trust: TrustedCAs) throws {
        var config = NetworkConfig()
        config.extraCAFile = trust.caFile
        config.systemCAPath = trust.caDirectory
        config.userAgent = "mxresolvectl-check"
        config.ioThreads = 1
        backend = try NetworkBackend(config: config)
    }

    deinit { backend.stop() }

    /// `GET https://urlHost:port/path` over a connection to `address` only, within `timeoutMs`.
    func get(tlsName: String, port: UInt16, path: String, address: IPAddress, timeoutMs: Int,
             maxBodyBytes: Int = 256 * 1024) -> Result<HTTPSResponse, HTTPSError> {
        let urlHost = IPAddress(tlsName)?.isIPv6 == true ? "[\(tlsName)]" : tlsName
        let request = HTTPSRequest(url: "https://\(urlHost):\(port)\(path)", host: tlsName, port: port, connectTo: [address],
                                   maxBodyBytes: maxBodyBytes, connectTimeoutMs: max(1, timeoutMs), totalTimeoutMs: max(1, timeoutMs))
        let done = DispatchSemaphore(value: 0)
        let box = PthreadMutex<Result<HTTPSResponse, HTTPSError>?>(nil)
        backend.httpsGet(request) { result in
            box.withLock { $0 = result }
            done.signal()
        }
        // The adapter enforces the timeout; the margin covers a completion that never comes.
        if done.wait(timeout: .now() + .milliseconds(max(1, timeoutMs) + 1000)) == .timedOut { return .failure(.timeout) }
        return box.withLock { $0 } ?? .failure(.timeout)
    }
}

/// Runs closures on threads of their own and waits for all of them (each is bounded in time).
func runConcurrently(_ jobs: [@Sendable () -> Void]) {
    let group = DispatchGroup()
    let queue = DispatchQueue(label: "mxresolvectl.check", attributes: .concurrent)
    for job in jobs { queue.async(group: group, execute: job) }
    group.wait()
}
