import Foundation
import NclavAuth
import NclavCore
import NclavStore

/// An HTTP answer, independent of the server framework: the server copies it onto the wire.
public struct BackendResponse: Sendable, Equatable {
    public var status: Int
    public var headers: [String: String]
    public var body: Data

    public init(status: Int, headers: [String: String] = [:], body: Data = Data()) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// nclav's error shape: `{"error": "...", "details": [...]}`.
    public static func error(_ status: Int, _ message: String, details: [String] = []) -> BackendResponse {
        struct Body: Encodable {
            let error: String
            let details: [String]
        }
        return json(status, Body(error: message, details: details))
    }

    public static func json<T: Encodable>(_ status: Int, _ value: T) -> BackendResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = Timestamp.encoding
        let body = (try? encoder.encode(value)) ?? Data(#"{"error":"response could not be encoded","details":[]}"#.utf8)
        return BackendResponse(status: status, headers: ["Content-Type": "application/json"], body: body)
    }

    /// A lock holder's info exactly as terraform sent it, which terraform prints as "Lock Info".
    static func holder(_ status: Int, _ lock: StateLock) -> BackendResponse {
        BackendResponse(status: status, headers: ["Content-Type": "application/json"], body: lock.info)
    }
}

/// The Terraform HTTP state backend protocol over a `StateStore`.
///
/// Terraform sends Basic auth, `?ID=<lock id>` on writes while it holds a lock, and the lock
/// info JSON (`ID, Operation, Info, Who, Version, Created, Path`) on lock and unlock;
/// `terraform force-unlock` sends an unlock with an empty body.
public struct StateBackend: Sendable {
    private let store: any StateStore

    public init(store: any StateStore) {
        self.store = store
    }

    private func forbidden(_ key: StateKey) -> BackendResponse {
        .error(403, "this credential may not use the state of \(key)", details: ["a run credential is scoped to its own partition's state"])
    }

    /// Why `principal` may not use the state at `key` now, or nil when it may: a run
    /// credential opens only its own partition's state, and only while its run is running.
    private func refusal(_ key: StateKey, _ principal: Principal) async throws -> BackendResponse? {
        guard principal.mayUseState(key) else { return forbidden(key) }
        if case .run(let scope) = principal, try await store.runStatus(scope.runID) != .running {
            return .error(
                401, "this run credential ended with its run",
                details: ["run \(scope.runID) is not running; a run's credential works only while the run does"])
        }
        return nil
    }

    // MARK: State

    public func get(_ key: StateKey, as principal: Principal) async throws -> BackendResponse {
        if let refusal = try await refusal(key, principal) { return refusal }
        guard let (info, body) = try await store.latestState(key) else { return BackendResponse(status: 204) }
        return Self.state(info, body)
    }

    /// The newest state with its `Content-MD5`: the stored one, or hashed for an old row without it.
    private static func state(_ info: StateVersionInfo, _ body: Data) -> BackendResponse {
        let md5 = info.md5.isEmpty ? Digest.md5Base64(body) : info.md5
        return BackendResponse(status: 200, headers: ["Content-Type": "application/json", "Content-MD5": md5], body: body)
    }

    /// `digests`: the body's hashes when the caller computed them while receiving it
    /// (the server does); otherwise they are computed here.
    /// `staged`: the body's file when the store staged it while it arrived. `document`: the
    /// body already parsed, when the caller could do it while waiting for a digest.
    /// What a state GET sends: an answer in memory, or the newest body's open file (the
    /// caller sends it, e.g. with `sendfile`, and closes the descriptor).
    public enum Download: Sendable {
        case response(BackendResponse)
        case file(headers: [String: String], descriptor: Int32, size: Int)
    }

    /// `get`, letting a file-backed body go out as a file.
    public func download(_ key: StateKey, as principal: Principal) async throws -> Download {
        if let refusal = try await refusal(key, principal) { return .response(refusal) }
        guard let (info, body) = try await store.latestStateBody(key) else { return .response(BackendResponse(status: 204)) }
        switch body {
        case .data(let data):
            return .response(Self.state(info, data))
        case .file(let descriptor, let size):
            guard !info.md5.isEmpty else {
                // No stored MD5 (not written by this server): hash it the ordinary way.
                close(descriptor)
                return .response(try await get(key, as: principal))
            }
            return .file(headers: ["Content-Type": "application/json", "Content-MD5": info.md5], descriptor: descriptor, size: size)
        }
    }

    public func put(
        _ key: StateKey, body: Data, digests: BodyDigests? = nil, document given: StateDocument.Parsed? = nil,
        staged: (any StagedStateBody)? = nil, contentMD5: String?,
        lockID: String?, force: Bool, as principal: Principal, now: Date = Date()
    ) async throws -> BackendResponse {
        if let refusal = try await refusal(key, principal) { return refusal }
        if force, principal != .admin {
            return .error(403, "only the admin token may force a state write", details: ["drop ?force=true or use the admin token"])
        }
        // The passes over a large body are independent: run them side by side.
        async let md5 = digests?.md5Base64 ?? Digest.md5Base64(body)
        async let sha256 = digests?.sha256Hex ?? Digest.sha256Hex(body)
        async let parsed = given ?? StateDocument.parse(body)
        if let contentMD5, !contentMD5.isEmpty, contentMD5 != (await md5) {
            return .error(400, "Content-MD5 does not match the body", details: ["the state was damaged in transit; nothing was stored"])
        }
        let document: StateDocument
        switch await parsed {
        case .success(let value): document = value
        case .failure(let problem): return .error(400, "not a Terraform state: \(problem)", details: ["nothing was stored"])
        }
        let write = StateWrite(
            body: body, serial: document.serial, lineage: document.lineage, sha256: await sha256, md5: await md5,
            lockID: lockID.flatMap { $0.isEmpty ? nil : $0 }, force: force, runID: principal.runID, time: now,
            staged: staged)
        switch try await store.writeState(key, write) {
        case .stored, .unchanged:
            return BackendResponse(status: 200)
        case .locked(let holder):
            return .holder(423, holder)
        case .lineageConflict(let current):
            return .error(
                409, "state lineage differs from the stored state's",
                details: [
                    "stored lineage \(current.lineage), serial \(current.serial)", "received lineage \(document.lineage)",
                    "this state belongs to a different Terraform workspace; use ?force=true (admin) to replace it",
                ])
        case .serialConflict(let current):
            return .error(
                409, "state serial \(document.serial) is not newer than the stored serial \(current.serial)",
                details: ["another writer stored a newer state; pull it and retry", "use ?force=true (admin) to overwrite"])
        }
    }

    public func delete(_ key: StateKey, as principal: Principal) async throws -> BackendResponse {
        guard principal == .admin else { return .error(403, "only the admin token may delete a state") }
        switch try await store.deleteState(key) {
        case .deleted: return BackendResponse(status: 200)
        case .locked(let holder): return .holder(423, holder)
        }
    }

    // MARK: Locks

    private struct LockInfo: Decodable {
        let id: String
        enum CodingKeys: String, CodingKey { case id = "ID" }
    }

    /// The lock's `ID`. Every lock and unlock carries one, so this is on the hot path: a strict
    /// scan finds the member and only an escaped string goes through `JSONDecoder`.
    static func lockID(from body: Data) -> String? {
        guard let range = try? JSONScan.topLevelMember(body, key: "ID") else { return nil }
        let value = body[body.startIndex + range.lowerBound..<body.startIndex + range.upperBound]
        guard value.count >= 2, value.first == UInt8(ascii: "\""), value.last == UInt8(ascii: "\"") else { return nil }
        let id: String?
        if value.contains(UInt8(ascii: "\\")) {
            id = try? JSONDecoder().decode(String.self, from: Data(value))
        } else {
            id = String(decoding: value.dropFirst().dropLast(), as: UTF8.self)
        }
        guard let id, !id.isEmpty else { return nil }
        return id
    }

    public func lock(_ key: StateKey, body: Data, as principal: Principal, now: Date = Date()) async throws -> BackendResponse {
        if let refusal = try await refusal(key, principal) { return refusal }
        guard let id = Self.lockID(from: body) else {
            return .error(400, "the lock body must be Terraform's lock info JSON with a non-empty `ID`")
        }
        switch try await store.acquireLock(key, StateLock(id: id, info: body, runID: principal.runID, createdAt: now)) {
        case .acquired, .alreadyHeld: return BackendResponse(status: 200)
        case .heldByOther(let holder): return .holder(423, holder)
        }
    }

    /// The current holder's lock info (200), or 204 when the state is not locked.
    public func lockInfo(_ key: StateKey, as principal: Principal) async throws -> BackendResponse {
        if let refusal = try await refusal(key, principal) { return refusal }
        guard let lock = try await store.lock(key) else { return BackendResponse(status: 204) }
        return .holder(200, lock)
    }

    public func unlock(_ key: StateKey, body: Data, as principal: Principal) async throws -> BackendResponse {
        if let refusal = try await refusal(key, principal) { return refusal }
        let isForce = body.allSatisfy { $0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }
        if isForce, principal != .admin {
            return .error(403, "only the admin token may force-unlock", details: ["send the lock info JSON with the holder's ID to unlock"])
        }
        let id: String?
        if isForce {
            id = nil
        } else {
            guard let parsed = Self.lockID(from: body) else {
                return .error(400, "the unlock body must be Terraform's lock info JSON with a non-empty `ID` (or empty to force-unlock)")
            }
            id = parsed
        }
        switch try await store.releaseLock(key, id: id) {
        case .released, .notLocked: return BackendResponse(status: 200)
        case .heldByOther(let holder): return .holder(409, holder)
        }
    }

    // MARK: Versions

    public func versions(_ key: StateKey, as principal: Principal) async throws -> BackendResponse {
        if let refusal = try await refusal(key, principal) { return refusal }
        struct Listing: Encodable {
            let enclave: String
            let partition: String
            let versions: [StateVersionInfo]
        }
        return .json(200, Listing(enclave: key.enclave, partition: key.partition, versions: try await store.stateVersions(key)))
    }

    /// Stores an old version again as the newest one. Its serial is raised above the current
    /// state's so terraform accepts it as the latest; everything else is the old document.
    /// Admin only, refused while the state is locked.
    public func rollback(_ key: StateKey, to version: Int64, as principal: Principal, now: Date = Date()) async throws -> BackendResponse {
        guard principal == .admin else { return .error(403, "only the admin token may roll a state back") }
        guard let (_, old) = try await store.stateVersion(key, version: version) else {
            return .error(404, "state \(key) has no version \(version)", details: ["list versions at /terraform/state/\(key)/versions"])
        }
        guard let latest = try await store.latestState(key) else { return .error(404, "state \(key) has no versions") }
        guard var document = (try? JSONSerialization.jsonObject(with: old)) as? [String: Any], let lineage = document["lineage"] as? String else {
            return .error(409, "version \(version) is not a readable state and cannot be restored")
        }
        let serial = latest.info.serial + 1
        document["serial"] = serial
        let body = (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys])) ?? old
        let write = StateWrite(
            body: body, serial: serial, lineage: lineage, sha256: Digest.sha256Hex(body), md5: Digest.md5Base64(body),
            lockID: nil, force: true, runID: nil, time: now)
        switch try await store.writeState(key, write) {
        case .stored(let info), .unchanged(let info):
            return .json(200, ["restored_version": String(version), "new_version": String(info.version), "serial": String(serial)])
        case .locked(let holder):
            return .holder(423, holder)
        case .lineageConflict, .serialConflict:
            return .error(409, "the store refused the restored state")
        }
    }

    public func version(_ key: StateKey, version: Int64, as principal: Principal) async throws -> BackendResponse {
        if let refusal = try await refusal(key, principal) { return refusal }
        guard let (info, body) = try await store.stateVersion(key, version: version) else {
            return .error(404, "state \(key) has no version \(version)", details: ["list versions at /terraform/state/\(key)/versions"])
        }
        return BackendResponse(
            status: 200,
            headers: [
                "Content-Type": "application/json", "Content-MD5": info.md5.isEmpty ? Digest.md5Base64(body) : info.md5,
                "X-Nclav-State-Serial": String(info.serial), "X-Nclav-State-Version": String(info.version),
            ], body: body)
    }
}
