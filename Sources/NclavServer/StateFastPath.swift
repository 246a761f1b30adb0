import Foundation
import HTTPTypes
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NclavAuth
import NclavCore
import TFBackend

/// Terraform's lock, unlock and state-read requests, answered in the channel pipeline instead
/// of through Hummingbird's router.
///
/// Why: terraform takes and frees a state lock around every command, and a lock is the
/// smallest request the server answers, so per-request overhead decides its latency. A state
/// read is the largest, and here a body kept as a file goes out with `sendfile(2)`, which the
/// router's response writer (buffers only) cannot do.
/// Profiled with 50 concurrent lockers, most of the server's CPU per lock request was the
/// framework around the handler (docs/benchmarks.md): the async channel streams and their
/// generic metadata, the router, the request context and the middleware chain. This handler
/// sees the decoded request parts, answers the lock, unlock and read routes of
/// `StateRoutes.table` with the same `StateBackend` calls, the same `Authenticator` and the
/// same response bodies, and records the same log line and metrics. Everything else passes
/// through untouched.
///
/// Ordering: HTTP/1.1 answers requests on a connection in order. A request is only taken
/// here when no request of that connection is being answered by the router; while one is
/// taken here, later parts wait in this handler and are replayed after its answer.
final class StateFastPath: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    struct Services: Sendable {
        let backend: StateBackend
        let authenticator: Authenticator
        let metrics: ServerMetrics
        let logger: Logger
        let serverName: String
    }

    private enum State {
        case passing
        case receiving(head: HTTPRequest, route: StateRoute, body: ByteBuffer?)
        case answering
    }

    /// Largest lock body taken here; terraform's is a few hundred bytes. Bigger bodies go
    /// the router's way, which applies the server's size cap.
    static let maxBodyBytes = 64 * 1024
    /// Pipelined parts held while a lock is answered; past this the client is misbehaving.
    static let maxHeldParts = 256

    private let services: Services
    private var state = State.passing
    /// Requests handed to the router whose response has not finished yet.
    private var routerRequestsInFlight = 0
    private var held: [HTTPRequestPart] = []
    private var quiescePending = false

    init(services: Services) {
        self.services = services
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if case .answering = state {
            hold(part, context: context)
            return
        }
        if !held.isEmpty {
            hold(part, context: context)
            return
        }
        handle(part, context: context)
    }

    private func hold(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        held.append(part)
        if held.count > Self.maxHeldParts { context.close(promise: nil) }
    }

    private func handle(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        switch (state, part) {
        case (.passing, .head(let head)):
            if routerRequestsInFlight == 0, let route = StateRoute(head) {
                state = .receiving(head: head, route: route, body: nil)
            } else {
                routerRequestsInFlight += 1
                context.fireChannelRead(wrapInboundOut(part))
            }
        case (.receiving(let head, let route, var body), .body(var chunk)):
            if (body?.readableBytes ?? 0) + chunk.readableBytes > Self.maxBodyBytes {
                // Too big to be terraform's lock info: let the router answer it, with the head first.
                state = .passing
                routerRequestsInFlight += 1
                context.fireChannelRead(wrapInboundOut(.head(head)))
                if let body { context.fireChannelRead(wrapInboundOut(.body(body))) }
                context.fireChannelRead(wrapInboundOut(.body(chunk)))
                return
            }
            if body == nil { body = chunk } else { body!.writeBuffer(&chunk) }
            state = .receiving(head: head, route: route, body: body)
        case (.receiving(let head, let route, let body), .end):
            state = .answering
            answer(head, route, body, context: context)
        default:
            context.fireChannelRead(wrapInboundOut(part))
        }
    }

    /// Graceful shutdown asks each connection to close once idle. The handler after this one
    /// only knows of the router's requests, so while a lock is being answered here the
    /// request waits, and goes on once the answer is written.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            switch state {
            case .passing: break
            case .receiving, .answering:
                quiescePending = true
                return
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            routerRequestsInFlight -= 1
        }
        context.write(data, promise: promise)
    }

    private func answer(_ head: HTTPRequest, _ route: StateRoute, _ body: ByteBuffer?, context: ChannelHandlerContext) {
        let start = ContinuousClock.now
        let services = services
        let authorization = head.headerFields.value(.authorization)
        let bytes = body.map { Data($0.readableBytesView) } ?? Data()
        let loopBound = NIOLoopBound(Target(handler: self, context: context), eventLoop: context.eventLoop)
        Self.spawn(route, head: head, body: bytes, authorization: authorization, services: services, start: start, target: loopBound)
    }

    /// The handler and its context, used again on the event loop once the answer is known.
    private struct Target {
        let handler: StateFastPath
        let context: ChannelHandlerContext
    }

    /// Runs the request against the backend on a task and sends the answer from the event
    /// loop. The SQLite store completes on its writer thread, so the request crosses threads
    /// twice; completing straight onto the event loop was faster on average but had a worse
    /// tail latency (docs/benchmarks.md).
    private static func spawn(
        _ route: StateRoute, head: HTTPRequest, body: Data, authorization: String?, services: Services,
        start: ContinuousClock.Instant, target: NIOLoopBound<Target>
    ) {
        Task {
            let answer = await Self.answer(route, body: body, authorization: authorization, services: services)
            target.eventLoop.execute {
                let target = target.value
                target.handler.send(answer, for: head, route: route, start: start, context: target.context)
            }
        }
    }

    /// What to send: an answer in memory, or a state body's open file.
    private typealias Answer = StateBackend.Download

    private static func answer(_ route: StateRoute, body: Data, authorization: String?, services: Services) async -> Answer {
        if case .read = route.operation, let principal = services.authenticator.principal(authorization: authorization),
            let key = try? StateKey(enclave: route.enclave, partition: route.partition)
        {
            do { return try await services.backend.download(key, as: principal) } catch {
                return .response(failure(error, route: route, services: services))
            }
        }
        return .response(await response(route, body: body, authorization: authorization, services: services))
    }

    private static func failure(_ error: Error, route: StateRoute, services: Services) -> BackendResponse {
        let apiError = APIError.from(error)
        if apiError.status.code >= 500 {
            services.logger.error("request failed", metadata: ["path": "\(route.path)", "error": "\(String(describing: error))"])
        }
        return .error(apiError.status.code, apiError.message, details: apiError.details)
    }

    private static func response(_ route: StateRoute, body: Data, authorization: String?, services: Services) async -> BackendResponse {
        guard let principal = services.authenticator.principal(authorization: authorization) else {
            var response = AuthMiddleware.unauthorized
            response.headers["WWW-Authenticate"] = AuthMiddleware.challenge
            return response
        }
        let key: StateKey
        do { key = try StateKey(enclave: route.enclave, partition: route.partition) } catch {
            return .error(400, "invalid state address: \(error)")
        }
        do {
            switch route.operation {
            case .lock: return try await services.backend.lock(key, body: body, as: principal)
            case .unlock: return try await services.backend.unlock(key, body: body, as: principal)
            case .read: return try await services.backend.get(key, as: principal)
            }
        } catch {
            return failure(error, route: route, services: services)
        }
    }

    private func send(
        _ answer: Answer, for head: HTTPRequest, route: StateRoute, start: ContinuousClock.Instant,
        context: ChannelHandlerContext
    ) {
        let status: Int, headers: [String: String], length: Int
        switch answer {
        case .response(let response): (status, headers, length) = (response.status, response.headers, response.body.count)
        case .file(let fileHeaders, _, let size): (status, headers, length) = (200, fileHeaders, size)
        }
        var fields = HTTPFields()
        for (name, value) in headers {
            if let fieldName = HTTPField.Name(name) { fields[fieldName] = value }
        }
        fields[.contentLength] = String(length)
        fields[.server] = services.serverName
        let closing = head.headerFields.value(.connection).map { $0.lowercased().contains("close") } ?? false
        if closing { fields[.connection] = "close" }
        // Written from this handler's context, these parts do not pass through `write` above,
        // which counts only the router's answers.
        context.write(wrapOutboundOut(.head(HTTPResponse(status: HTTPResponse.Status(code: status), headerFields: fields))), promise: nil)
        switch answer {
        case .response(let response):
            if !response.body.isEmpty {
                context.write(wrapOutboundOut(.body(context.channel.allocator.buffer(bytes: response.body))), promise: nil)
            }
        case .file(_, let descriptor, let size):
            sendFile(descriptor, size: size, context: context)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        let response = (status: status, count: length)

        let elapsed = ContinuousClock.now - start
        let seconds = elapsed.inSeconds
        services.metrics.request(
            method: head.method.rawValue, route: route.template, status: response.status, seconds: seconds,
            requestBytes: head.headerFields.declaredLength, responseBytes: response.count)
        if services.logger.logLevel <= .info {
            services.logger.info(
                "request",
                metadata: [
                    "method": "\(head.method.rawValue)", "path": "\(route.path)", "status": "\(response.status)",
                    "ms": "\(String(format: "%.2f", seconds * 1000))",
                ])
        }
        if closing {
            context.close(promise: nil)
            return
        }
        state = .passing
        if quiescePending {
            // Shutting down: answer nothing more here; the next handler closes the connection
            // once the router's requests, if any, are answered too.
            quiescePending = false
            held = []
            context.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
            return
        }
        let replay = held
        held = []
        for part in replay {
            if case .answering = state { held.append(part) } else { handle(part, context: context) }
        }
    }
}

extension StateFastPath {
    /// Sends a state body's file with `sendfile(2)`: the bytes go from the page cache to the
    /// socket without passing through this process. The HTTP/1 encoder takes file regions, but
    /// the HTTPTypes codec in front of it only carries buffers, so the region is written from
    /// the codec's own context, straight to the encoder, between the head and the end that
    /// go through the codec. Without a codec (never in this server) the file is read instead.
    static let sendfileChunk = 2 << 20

    fileprivate func sendFile(_ descriptor: Int32, size: Int, context: ChannelHandlerContext) {
        let handle = NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: descriptor)
        guard size > 0, let codec = try? context.pipeline.syncOperations.context(handlerType: HTTP1ToHTTPServerCodec.self) else {
            var buffer = context.channel.allocator.buffer(capacity: size)
            let count = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { pointer in
                max(0, pread(descriptor, pointer.baseAddress, size, 0))
            }
            try? handle.close()
            if count > 0 { context.write(wrapOutboundOut(.body(buffer)), promise: nil) }
            return
        }
        // In pieces of at most 2 MB, as nginx's `sendfile_max_chunk` does, so one large body
        // does not hold the event loop in a single long system call.
        var offset = 0
        while offset < size {
            let end = min(size, offset + Self.sendfileChunk)
            let region = FileRegion(fileHandle: handle, readerIndex: offset, endIndex: end)
            if end == size {
                let written = context.eventLoop.makePromise(of: Void.self)
                codec.write(NIOAny(HTTPServerResponsePart.body(.fileRegion(region))), promise: written)
                written.futureResult.whenComplete { _ in try? handle.close() }
            } else {
                codec.write(NIOAny(HTTPServerResponsePart.body(.fileRegion(region))), promise: nil)
            }
            offset = end
        }
    }
}

/// A lock, unlock or read of a state, recognised from its method and raw path by the same
/// table the router is built from (`StateRoutes`); every other request is the router's.
struct StateRoute: Equatable, Sendable {
    enum Operation { case lock, unlock, read }
    let operation: Operation
    let enclave: String
    let partition: String
    let path: String
    /// The route as the router's metrics name it.
    let template: String

    private static let prefix = Array("/terraform/state/".utf8)

    /// Each route's template as the router's metrics name it, made once.
    private static let templates: [(suffix: [UInt8], template: String)] = StateRoutes.table.map {
        (Array($0.suffix.utf8), "/terraform/state/{enclave}/{partition}" + $0.suffix)
    }

    /// Parsed over the path's bytes: `split` and `hasPrefix` on strings showed up in a lock
    /// request's CPU profile.
    init?(_ head: HTTPRequest) {
        guard let target = head.path else { return nil }
        var utf8 = Array(target.utf8)
        if let query = utf8.firstIndex(of: UInt8(ascii: "?")) { utf8.removeSubrange(query...) }
        // Percent-escapes and anything unusual are left to the router, which decodes them.
        guard utf8.count > Self.prefix.count, utf8.starts(with: Self.prefix), !utf8.contains(UInt8(ascii: "%")) else { return nil }
        var segments: [Range<Int>] = []
        var start = Self.prefix.count
        for index in start...utf8.count where index == utf8.count || utf8[index] == UInt8(ascii: "/") {
            segments.append(start..<index)
            start = index + 1
            if segments.count > 3 { return nil }
        }
        guard segments.count >= 2, !segments[0].isEmpty, !segments[1].isEmpty else { return nil }
        let suffix = utf8[segments[1].upperBound...]
        switch StateRoutes.operation(method: head.method.rawValue, suffix: suffix) {
        case .lock: operation = .lock
        case .unlock: operation = .unlock
        case .read: operation = .read
        default: return nil
        }
        enclave = String(decoding: utf8[segments[0]], as: UTF8.self)
        partition = String(decoding: utf8[segments[1]], as: UTF8.self)
        path = String(decoding: utf8, as: UTF8.self)
        template = Self.templates.first { $0.suffix.elementsEqual(suffix) }?.template ?? "/terraform/state/{enclave}/{partition}"
    }
}
