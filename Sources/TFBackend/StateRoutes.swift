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

    /// The operation of a request on a fixed suffix (no captures), or nil. Compares bytes
    /// against the table's own, so the lock path allocates nothing to find its route.
    public static func operation(method: String, suffix: ArraySlice<UInt8>) -> Operation? {
        for route in byteTable where route.method == method && route.suffix.elementsEqual(suffix) {
            return route.operation
        }
        return nil
    }

    /// Whether a request, named by its method and matched template, took or tried to take a
    /// lock (for the metrics, on every request: one dictionary lookup).
    public static func isLock(method: String, template: String) -> Bool {
        lockMethodsByTemplate[template]?.contains(method) == true
    }

    private static let byteTable: [(method: String, suffix: [UInt8], operation: Operation)] = table.map {
        ($0.method, Array($0.suffix.utf8), $0.operation)
    }

    private static let lockMethodsByTemplate: [String: [String]] = Dictionary(
        grouping: table.filter { $0.operation == .lock }, by: { "/terraform/state/{enclave}/{partition}" + $0.suffix }
    ).mapValues { $0.map(\.method) }
}
