import Foundation
import HTTPTypes
import Hummingbird
import NclavAPI
import NclavCore
import NclavStore
import TFBackend

/// Following a run's log while terraform writes it.
///
/// - `GET …/iac/runs/{run}/stream`: Server-Sent Events. Each complete line is one `line`
///   event whose `id` is the log's byte offset after that line; a client that reconnects with
///   `Last-Event-ID` (or `?offset=`) continues exactly there, with no gap and no repeat. When
///   the run has ended and everything was sent, one `end` event carries its status.
/// - `GET …/iac/runs/{run}/log?offset=N`: the same for clients without SSE: the text after
///   byte `N`, the next offset, and whether the run is complete.
///
/// The stream reads the store, never terraform's pipe, so a slow or vanished client cannot
/// slow a run down.
struct LogRoutes: Sendable {
    let store: any StateStore
    static let pollInterval: Duration = .milliseconds(200)

    func register(on router: Router<NclavRequestContext>, key: @escaping @Sendable (NclavRequestContext) throws -> StateKey) {
        router.get(RouterPath(APIPath.Template.runStream)) { request, context in
            let (runID, _) = try await run(context, key: key)
            let start = Self.offset(request.headers[.lastEventID] ?? request.uri.queryParameters.get("offset").map { String($0) })
            return stream(runID, from: start)
        }
        router.get(RouterPath(APIPath.Template.runLog)) { request, context in
            let (_, run) = try await run(context, key: key)
            let bytes = Array(run.log.utf8)
            let start = min(Self.offset(request.uri.queryParameters.get("offset").map { String($0) }), bytes.count)
            // Only whole lines, so a reader never sees half a line twice.
            let end = Self.completeLinesEnd(bytes, from: start, final: run.status != .running)
            return Routes.json(
                LogChunk(
                    offset: start, nextOffset: end, text: String(decoding: bytes[start..<end], as: UTF8.self),
                    status: run.status.rawValue, complete: run.status != .running && end == bytes.count))
        }
    }

    static func offset(_ text: String?) -> Int { max(0, text.flatMap { Int($0) } ?? 0) }

    /// The end of the last complete line after `start` (or the end of the log once the run is over).
    static func completeLinesEnd(_ bytes: [UInt8], from start: Int, final: Bool) -> Int {
        if final { return bytes.count }
        var end = start
        for index in start..<bytes.count where bytes[index] == 0x0A { end = index + 1 }
        return end
    }

    private func run(_ context: NclavRequestContext, key: @Sendable (NclavRequestContext) throws -> StateKey) async throws -> (UUID, IacRun) {
        let stateKey = try key(context)
        guard let text = context.parameters.get("run"), let runID = UUID(uuidString: text) else {
            throw APIError(.badRequest, "run id must be a UUID")
        }
        guard let run = try await store.run(runID), run.enclaveID == stateKey.enclave, run.partitionID == stateKey.partition else {
            throw APIError(.notFound, "partition \(stateKey) has no run \(runID)")
        }
        return (runID, run)
    }

    private func stream(_ runID: UUID, from start: Int) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        let store = self.store
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody { writer in
                var offset = start
                while true {
                    guard let run = try await store.run(runID) else { break }
                    let bytes = Array(run.log.utf8)
                    let finished = run.status != .running
                    let end = min(Self.completeLinesEnd(bytes, from: min(offset, bytes.count), final: finished), bytes.count)
                    if end > offset {
                        var events = ""
                        var lineStart = offset
                        for index in offset..<end where bytes[index] == 0x0A || index == end - 1 {
                            let lineEnd = bytes[index] == 0x0A ? index : index + 1
                            let line = String(decoding: bytes[lineStart..<lineEnd], as: UTF8.self)
                            events += "id: \(index + 1)\nevent: line\ndata: \(line)\n\n"
                            lineStart = index + 1
                        }
                        offset = end
                        do { try await writer.write(ByteBuffer(string: events)) } catch { return }
                    }
                    if finished && offset >= bytes.count {
                        let exit = run.exitCode.map(String.init) ?? "null"
                        try? await writer.write(
                            ByteBuffer(string: "event: end\ndata: {\"status\":\"\(run.status.rawValue)\",\"exit_code\":\(exit)}\n\n"))
                        break
                    }
                    try? await Task.sleep(for: Self.pollInterval)
                }
                try? await writer.finish(nil)
            })
    }
}

extension HTTPField.Name {
    static let lastEventID = Self("Last-Event-ID")!
}
