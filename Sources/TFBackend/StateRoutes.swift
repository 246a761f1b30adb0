/// Every request the Terraform HTTP state backend answers, in one table that both the
/// server's router and its lock fast path are built from.
///
/// Paths are relative to a state's address (`/terraform/state/<enclave>/<partition>`). Two
/// lock spellings are accepted, the two terraform sends: `POST`/`DELETE` on `…/lock` (what
/// nclav's runner configures with `TF_HTTP_LOCK_METHOD` and friends) and `LOCK`/`UNLOCK` on
/// the state address (terraform's defaults when only `address` is set).
public enum StateRoutes {
    public enum Operation: Sendable, Equatable {
        case read, write, delete, lock, unlock, lockInfo, versions, version, restore
    }

    public struct Route: Sendable, Equatable {
        public let method: String
        /// After the state address: "" or "/lock", "/versions/{version}", ….
        public let suffix: String
        public let operation: Operation
    }

    public static let table: [Route] = [
        Route(method: "GET", suffix: "", operation: .read),
        Route(method: "POST", suffix: "", operation: .write),
        Route(method: "DELETE", suffix: "", operation: .delete),
        Route(method: "POST", suffix: "/lock", operation: .lock),
        Route(method: "DELETE", suffix: "/lock", operation: .unlock),
        Route(method: "LOCK", suffix: "", operation: .lock),
        Route(method: "UNLOCK", suffix: "", operation: .unlock),
        Route(method: "GET", suffix: "/lock", operation: .lockInfo),
        Route(method: "GET", suffix: "/versions", operation: .versions),
        Route(method: "GET", suffix: "/versions/{version}", operation: .version),
        Route(method: "POST", suffix: "/versions/{version}/restore", operation: .restore),
    ]

    /// The operation of a request on a fixed suffix (no captures), or nil. Compares bytes, so
    /// the lock path allocates nothing to find its route.
    public static func operation<Suffix: Collection<UInt8>>(method: String, suffix: Suffix) -> Operation? {
        for route in table where route.method == method && route.suffix.utf8.elementsEqual(suffix) {
            return route.operation
        }
        return nil
    }

    /// Whether a request, named by its method and matched template, took or tried to take a
    /// lock.
    public static func isLock(method: String, template: String) -> Bool {
        guard let suffixStart = template.range(of: "/terraform/state/{enclave}/{partition}")?.upperBound else { return false }
        return operation(method: method, suffix: template[suffixStart...].utf8) == .lock
    }
}
