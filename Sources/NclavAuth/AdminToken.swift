import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The server's admin bearer token and where it came from.
public struct AdminToken: Sendable {
    public enum Source: Sendable, Equatable {
        case environment
        case file(String)
        case generated(String)
    }

    public let value: String
    public let source: Source

    /// Tokens from NCLAV_TOKEN shorter than this are refused: they can be guessed.
    public static let minimumLength = 16

    public enum SetupError: Error, Sendable, CustomStringConvertible, Equatable {
        case environmentTokenTooShort(Int)
        case rotateWithEnvironmentToken
        case unreadable(path: String, reason: String)
        case malformedFile(path: String)
        case cannotWrite(path: String, reason: String)

        public var description: String {
            switch self {
            case .environmentTokenTooShort(let length):
                return "NCLAV_TOKEN has \(length) characters; use at least \(AdminToken.minimumLength) (for example: openssl rand -hex 32)"
            case .rotateWithEnvironmentToken:
                return "--rotate-token replaces the token file, but NCLAV_TOKEN is set; unset it or change its value instead"
            case .unreadable(let path, let reason):
                return "cannot read the token file \(path): \(reason)"
            case .malformedFile(let path):
                return "the token file \(path) does not hold a 64-character hex token; delete it or pass --rotate-token to make a new one"
            case .cannotWrite(let path, let reason):
                return "cannot write the token file \(path): \(reason)"
            }
        }
    }

    /// `NCLAV_TOKEN` when set; else `<home>/token`, created (0600, 64 hex characters from the
    /// system CSPRNG) when missing or when `rotate` is set, and reused across restarts.
    public static func load(environment: [String: String], home: URL, rotate: Bool) throws(SetupError) -> AdminToken {
        if let value = environment["NCLAV_TOKEN"], !value.isEmpty {
            if rotate { throw .rotateWithEnvironmentToken }
            guard value.count >= minimumLength else { throw .environmentTokenTooShort(value.count) }
            return AdminToken(value: value, source: .environment)
        }
        let path = home.appendingPathComponent("token").path
        if !rotate, FileManager.default.fileExists(atPath: path) {
            let text: String
            do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
                throw .unreadable(path: path, reason: "\(error.localizedDescription)")
            }
            let value = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard value.count == 64, value.allSatisfy(\.isHexDigit) else { throw .malformedFile(path: path) }
            // A token file others can read is a leaked token: tighten it rather than serve with it.
            _ = chmod(path, 0o600)
            return AdminToken(value: value, source: .file(path))
        }
        let value = generateHex(bytes: 32)
        try writeSecretFile(path: path, contents: value + "\n")
        return AdminToken(value: value, source: .generated(path))
    }

    /// `count` random bytes from the system CSPRNG, as lowercase hex.
    public static func generateHex(bytes count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    /// Writes through a new 0600 file and an atomic rename, so the secret is never readable by
    /// others, not even for a moment, and a crash never leaves half a token behind.
    static func writeSecretFile(path: String, contents: String) throws(SetupError) {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700])
        } catch {
            throw .cannotWrite(path: path, reason: "\(error.localizedDescription)")
        }
        let temporary = "\(path).tmp-\(getpid())"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_TRUNC, 0o600)
        guard descriptor >= 0 else { throw .cannotWrite(path: path, reason: String(cString: strerror(errno))) }
        let bytes = Array(contents.utf8)
        let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        let synced = fsync(descriptor)
        close(descriptor)
        guard written == bytes.count, synced == 0, rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw .cannotWrite(path: path, reason: reason)
        }
    }
}

/// Compares secrets without an early exit, so response timing does not reveal how many
/// leading characters of a guess were right.
public func constantTimeEquals(_ a: String, _ b: String) -> Bool {
    let left = Array(a.utf8), right = Array(b.utf8)
    var difference = UInt8(truncatingIfNeeded: left.count ^ right.count)
    for index in 0..<max(left.count, right.count) {
        let x = index < left.count ? left[index] : 0
        let y = index < right.count ? right[index] : 0
        difference |= x ^ y
    }
    return difference == 0
}
