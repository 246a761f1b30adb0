import NIOCore

/// Lets a connection read up to 1 MB per `read(2)` instead of NIO's default 64 KB.
///
/// Why: a 10 MB state upload arrived as ~160 chunks, each passing through the HTTP decoder,
/// two async sequences and the hashing tasks; 1 MB reads made large POSTs measurably faster
/// (docs/benchmarks.md). NIO's adaptive
/// allocator only grows a connection's buffer after reads that filled it, so small requests
/// (locks) keep small buffers.
final class LargeReads: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    static let maximumRead = 1 << 20

    func handlerAdded(context: ChannelHandlerContext) {
        _ = context.channel.setOption(
            ChannelOptions.recvAllocator,
            value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2048, maximum: Self.maximumRead))
    }
}
