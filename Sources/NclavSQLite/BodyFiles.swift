import Foundation
import NclavStore

/// Large Terraform state bodies, one file each in a directory beside the SQLite database.
///
/// Why not a BLOB: SQLite writes a body twice (into the WAL, then into the database at the
/// checkpoint) in 4 KB pages, an order of magnitude more CPU than one `write(2)` into
/// page-cache pages that a pruned version just freed (docs/benchmarks.md). The row still holds
/// everything else, and a body is only referenced by a row once its file is complete, so a
/// crash leaves at worst an unreferenced file, which `sweep` removes at the next open.
///
/// Names are generated here (a random UUID), never taken from a request, and checked again
/// before they become a path, so a damaged database cannot point outside the directory.
struct BodyFiles: Sendable {
    let directory: String
    /// fsync each body (and the directory) before its row commits: `synchronousFull`.
    let synchronous: Bool

    enum Failure: Error {
        case missing(name: String)
    }

    init(directory: String, synchronous: Bool) throws {
        self.directory = directory
        self.synchronous = synchronous
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }

    static func isValidName(_ name: String) -> Bool {
        name.utf8.count == 36
            && name.utf8.allSatisfy {
                (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
                    || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) || $0 == UInt8(ascii: "-")
            }
    }

    private func path(_ name: String) throws -> String {
        guard Self.isValidName(name) else { throw StoreError.corrupt("state body file name `\(name)` is not one nclav writes") }
        return directory + "/" + name
    }

    /// Writes a new body file and returns its name: the same steps as a body staged while it
    /// arrives, with all of it at once.
    func write(_ body: Data) throws -> String {
        let staged = try StagedBodyFile(files: self)
        body.withUnsafeBytes { staged.append($0) }
        do { try staged.complete() } catch {
            staged.discardUnlessClaimed()
            throw error
        }
        return staged.name
    }

    /// The body of `name`, which must be exactly `size` bytes.
    func read(_ name: String, size: Int) throws -> Data {
        let (fd, path) = try openForReading(name)
        defer { close(fd) }
        // Allocated uninitialised and handed to Data without a copy.
        guard let buffer = malloc(max(size, 1)) else { throw StoreError.database("out of memory reading \(size) bytes") }
        var offset = 0
        while offset < size {
            let count = Glibc.read(fd, buffer + offset, size - offset)
            if count < 0, errno == EINTR { continue }
            if count <= 0 {
                let reason = count < 0 ? String(cString: strerror(errno)) : "it ends after \(offset) bytes"
                free(buffer)
                throw StoreError.corrupt(
                    "state body file \(path) should hold \(size) bytes but \(reason); "
                        + "restore an intact version with `nclav state rollback`")
            }
            offset += count
        }
        return Data(bytesNoCopy: buffer, count: size, deallocator: .free)
    }

    /// An open descriptor of `name`'s body, checked to be `size` bytes; the caller closes it.
    func open(_ name: String, size: Int) throws -> Int32 {
        let (fd, path) = try openForReading(name)
        var info = stat()
        guard fstat(fd, &info) == 0, Int(info.st_size) == size else {
            let actual = Int(info.st_size)
            close(fd)
            throw StoreError.corrupt(
                "state body file \(path) should hold \(size) bytes but holds \(actual); "
                    + "restore an intact version with `nclav state rollback`")
        }
        return fd
    }

    /// `name`'s file opened for reading, and its path; `Failure.missing` when it is gone.
    private func openForReading(_ name: String) throws -> (Int32, String) {
        let path = try path(name)
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { throw Failure.missing(name: name) }
            throw StoreError.database("cannot open state body file \(path): \(String(cString: strerror(errno)))")
        }
        return (fd, path)
    }

    /// Removes bodies whose rows are gone, in the background: freeing a written-back file's
    /// blocks (with online discard) cost a write past the retention limit several ms.
    /// A name that is already gone is fine.
    func remove(_ names: [String]) {
        let paths = names.compactMap { try? path($0) }
        guard !paths.isEmpty else { return }
        Self.backgroundQueue.async { for path in paths { unlink(path) } }
    }

    /// Waits for background removals and releases queued so far.
    func drain() {
        Self.backgroundQueue.sync {}
    }

    /// Removes files no row references: bodies written by a process that died before its row
    /// committed, or whose row was pruned just before a crash. Files younger than `graceSeconds`
    /// are left: another process on the same database may be about to commit their row.
    static let sweepGraceSeconds: TimeInterval = 10

    func sweep(keeping referenced: Set<String>, graceSeconds: TimeInterval = BodyFiles.sweepGraceSeconds) -> Int {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return 0 }
        let cutoff = Date().addingTimeInterval(-graceSeconds)
        var removed = 0
        for name in names where !referenced.contains(name) && Self.isValidName(name) {
            let path = directory + "/" + name
            if let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date, modified > cutoff { continue }
            if unlink(path) == 0 { removed += 1 }
        }
        return removed
    }

    /// Writes a superseded body to disk and drops it from the page cache, in the background.
    ///
    /// Why: only the newest version of a state is read often. Without this every stored
    /// version stays cached until memory pressure, so each new version needs fresh pages, and
    /// on a VM a page the guest has not used recently is several times slower to fault in
    /// than one that was just freed (docs/benchmarks.md). Releasing the previous version's
    /// pages right away means the next write reuses them; the disk write would happen anyway
    /// within `dirty_expire`.
    func release(_ name: String) {
        guard let path = try? path(name) else { return }
        Self.backgroundQueue.async {
            let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return }
            // Only clean pages can be dropped: write the body out first.
            if fdatasync(fd) == 0 { _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) }
            close(fd)
        }
    }

    /// One serial queue for all stores: the work is disk I/O, and ordering keeps a release
    /// of a file from racing its removal.
    private static let backgroundQueue = DispatchQueue(label: "nclav-state-bodies", qos: .utility)

    func syncDirectory() {
        let fd = Glibc.open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }
}

/// A state body written into the store's body directory while it is still arriving, so that
/// storing it later only records a row. Made by `StateStore.stageStateBody(expectedSize:)`.
///
/// One task appends (the server's hashing task); whoever stores it claims it first, and the
/// request handler discards it at the end unless it was claimed, so a refused or failed
/// upload leaves no file behind (and a crash leaves one the next open sweeps).
final class StagedBodyFile: StagedStateBody, @unchecked Sendable {
    // `fd`, `written` and `failure` are touched only by the appending task, then by `finish`
    // after it; `claimed` and `discarded` are guarded by `lock`.
    let name: String
    let directory: String
    private let path: String
    private let files: BodyFiles
    private var fd: Int32
    private var written = 0
    private var failure: Int32 = 0
    private let lock = NSLock()
    private var claimed = false
    private var discarded = false

    init(files: BodyFiles) throws {
        name = UUID().uuidString.lowercased()
        directory = files.directory
        path = files.directory + "/" + name
        self.files = files
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StoreError.database("cannot create state body file \(path): \(String(cString: strerror(errno)))") }
    }

    /// Appends bytes; a write error is kept and reported by `finish`.
    func append(_ bytes: UnsafeRawBufferPointer) {
        guard failure == 0, fd >= 0, let base = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            let count = Glibc.write(fd, base + offset, bytes.count - offset)
            if count < 0 {
                if errno == EINTR { continue }
                failure = errno
                return
            }
            offset += count
        }
        written += bytes.count
    }

    /// Closes the file (fsyncing it and its directory for a `synchronousFull` store) and
    /// reports a write error kept by `append`.
    func complete() throws {
        if fd >= 0 {
            if failure == 0, files.synchronous, fsync(fd) != 0 { failure = errno }
            close(fd)
            fd = -1
            if failure == 0, files.synchronous { files.syncDirectory() }
        }
        if failure != 0 {
            throw StoreError.database("cannot write state body file \(path): \(String(cString: strerror(failure))) (check disk space)")
        }
    }

    /// Closes the file and returns its bytes, mapped from the page cache rather than copied.
    func finish() throws -> Data {
        try complete()
        guard written > 0 else { return Data() }
        let readFD = open(path, O_RDONLY | O_CLOEXEC)
        guard readFD >= 0 else { throw StoreError.database("cannot reopen state body file \(path): \(String(cString: strerror(errno)))") }
        defer { close(readFD) }
        // MAP_POPULATE maps every page now, in one call, instead of one fault per 4 KB.
        guard let mapped = mmap(nil, written, PROT_READ, MAP_PRIVATE | MAP_POPULATE, readFD, 0), mapped != MAP_FAILED else {
            throw StoreError.database("cannot map state body file \(path): \(String(cString: strerror(errno)))")
        }
        return Data(bytesNoCopy: mapped, count: written, deallocator: .custom { pointer, count in munmap(pointer, count) })
    }

    /// The store takes the file over; false if it was already discarded or claimed.
    func claim() -> Bool {
        lock.withLock {
            guard !claimed, !discarded else { return false }
            claimed = true
            return true
        }
    }

    /// Removes the file unless a store claimed it.
    func discardUnlessClaimed() {
        let remove = lock.withLock { () -> Bool in
            guard !claimed, !discarded else { return false }
            discarded = true
            return true
        }
        guard remove else { return }
        if fd >= 0 {
            close(fd)
            fd = -1
        }
        unlink(path)
    }
}
