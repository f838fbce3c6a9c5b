import MXCore

/// The checks of `GET /_matrix/key/v2/server` (Server-Server API, "Publishing Keys"), as the
/// federation tester makes them (gomatrixserverlib's KeyChecks): the response names the server
/// asked for, holds an ed25519 key, is valid for a while yet, and is signed by each listed key.
public struct ServerKeysResult: Sendable, Equatable {
    public var serverName: String?
    public var validUntilMs: Int64?
    public var keyIDs: [String] = []
    public var matchingServerName = false
    public var futureValidUntil = false
    public var hasEd25519Key = false
    public var allSignaturesVerify = false
    /// Why a check failed, one sentence each.
    public var problems: [String] = []

    public var ok: Bool { matchingServerName && futureValidUntil && hasEd25519Key && allSignaturesVerify && problems.isEmpty }

    public var json: JSONValue {
        .object(["server_name": serverName.map(JSONValue.string) ?? .null,
                 "valid_until_ts": validUntilMs.map(JSONValue.integer) ?? .null,
                 "verify_keys": .array(keyIDs.map(JSONValue.string)),
                 "matching_server_name": .bool(matchingServerName), "future_valid_until_ts": .bool(futureValidUntil),
                 "has_ed25519_key": .bool(hasEd25519Key), "all_ed25519_signatures_ok": .bool(allSignaturesVerify),
                 "problems": .array(problems.map(JSONValue.string))])
    }
}

public enum ServerKeys {
    public static func check(body: [UInt8], serverName: String, nowMs: Int64) -> ServerKeysResult {
        var r = ServerKeysResult()
        let doc: JSONValue
        do { doc = try JSONValue.parse(body) } catch {
            r.problems.append("the body is not JSON: \(error)")
            return r
        }
        guard case .object(var members) = doc else {
            r.problems.append("the body is JSON but not an object")
            return r
        }
        r.serverName = doc["server_name"]?.string
        r.matchingServerName = r.serverName == serverName
        if !r.matchingServerName {
            r.problems.append("server_name is \(r.serverName.map { "\"\($0)\"" } ?? "missing"), not \"\(serverName)\"")
        }
        r.validUntilMs = doc["valid_until_ts"]?.integer
        if let until = r.validUntilMs {
            r.futureValidUntil = until > nowMs
            if !r.futureValidUntil { r.problems.append("valid_until_ts \(until) is in the past (now \(nowMs))") }
        } else {
            r.problems.append("valid_until_ts is missing or not an integer")
        }
        let keys = doc["verify_keys"]?.object ?? [:]
        r.keyIDs = keys.keys.sorted()
        let ed25519 = keys.filter { $0.key.hasPrefix("ed25519:") }
        r.hasEd25519Key = !ed25519.isEmpty
        if !r.hasEd25519Key { r.problems.append("verify_keys has no ed25519 key") }

        // The signed bytes: the object without `signatures` and `unsigned`, as canonical JSON.
        let signatures = doc["signatures"]?[serverName]?.object ?? [:]
        members["signatures"] = nil
        members["unsigned"] = nil
        let message: [UInt8]
        do { message = try JSONValue.object(members).canonicalBytes() } catch {
            r.problems.append("the response \(error)")
            return r
        }
        var verified = 0
        for (id, key) in ed25519.sorted(by: { $0.key < $1.key }) {
            guard let publicKey = key["key"]?.string.flatMap(UnpaddedBase64.decode), publicKey.count == 32 else {
                r.problems.append("\(id): the key is not 32 bytes of unpadded base64")
                continue
            }
            guard let signatureText = signatures[id]?.string else {
                r.problems.append("\(id): no signature by \(serverName) with this key")
                continue
            }
            guard let signature = UnpaddedBase64.decode(signatureText), signature.count == 64 else {
                r.problems.append("\(id): the signature is not 64 bytes of unpadded base64")
                continue
            }
            if Ed25519.verify(publicKey: publicKey, signature: signature, message: message) {
                verified += 1
            } else {
                r.problems.append("\(id): the signature does not verify over the response's canonical JSON")
            }
        }
        r.allSignaturesVerify = r.hasEd25519Key && verified == ed25519.count
        return r
    }
}
