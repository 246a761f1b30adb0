import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Reads an enclaves directory from disk under one set of rules, the same for validation,
/// fingerprints, the CLI's upload and workspace mirroring, so no step sees a file another
/// step dropped:
///
/// - a symbolic link that resolves inside the tree counts as what it points to (a file's
///   content, a directory's files); one that leaves the tree, dangles, or loops is a problem
///   naming it;
/// - names starting with `.` are not part of the tree (`.git`, `.terraform`, editor files),
///   except `.terraform.lock.hcl`, terraform's provider lock file;
/// - local state files (`*.tfstate`, `*.tfstate.backup`) are left out with a notice: state
///   lives in nclav's backend;
/// - anything else that cannot be read as a regular file (a FIFO, a device, a file without
///   read permission) is a problem, never silently skipped;
/// - depth, path length and file count are bounded, and the walk is iterative, so no input
///   can exhaust the stack or run for ever.
public struct TreeFiles: Sendable {
    public struct Limits: Sendable, Equatable {
        /// Directory levels below the root.
        public var maxDepth: Int
        /// Bytes of a path relative to the root.
        public var maxPathBytes: Int
        /// Files in one listing.
        public var maxFiles: Int

        public init(maxDepth: Int = 32, maxPathBytes: Int = 1024, maxFiles: Int = 100_000) {
            self.maxDepth = maxDepth
            self.maxPathBytes = maxPathBytes
            self.maxFiles = maxFiles
        }

        public static let standard = Limits()
    }

    /// Something in the tree that cannot be used, with its path relative to the root.
    public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        public let path: String
        public let message: String
        public init(path: String, message: String) {
            self.path = path
            self.message = message
        }
        public var description: String { "\(path): \(message)" }
    }

    /// A file of the tree: where it appears, and where its bytes are (the link's target for a link).
    public struct File: Sendable, Equatable {
        public let path: String
        public let source: String
    }

    public struct Listing: Sendable, Equatable {
        public var files: [File] = []
        /// Files left out on purpose, with the reason (local state files).
        public var ignored: [String: String] = [:]
        public var problems: [Problem] = []
    }

    /// What one name in the tree is, once links inside the tree are followed.
    public enum Entry: Sendable, Equatable {
        case missing
        case file(source: String)
        case directory(source: String)
        case unusable(String)
    }

    public let root: String
    /// `root` with every link resolved; nil when the root does not exist.
    public let resolvedRoot: String?
    public let limits: Limits

    public init(root: String, limits: Limits = .standard) {
        let trimmed = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
        self.root = trimmed
        self.resolvedRoot = Self.realPath(trimmed)
        self.limits = limits
    }

    public func absolute(_ relative: String) -> String { relative.isEmpty ? root : "\(root)/\(relative)" }

    public static func join(_ relative: String, _ name: String) -> String { relative.isEmpty ? name : "\(relative)/\(name)" }

    /// Whether a name is part of the tree at all (hidden names are not).
    public static func isPartOfTree(_ name: String) -> Bool {
        !name.hasPrefix(".") || name == ".terraform.lock.hcl"
    }

    /// Why a local state file is left out, or nil for any other name.
    public static func ignoredReason(_ name: String) -> String? {
        name.hasSuffix(".tfstate") || name.hasSuffix(".tfstate.backup")
            ? "local state files are not used: state lives in nclav's backend (`nclav state push` stores one)" : nil
    }

    // MARK: One entry

    /// What `relative` is: a readable file, a directory, missing, or unusable and why.
    public func entry(_ relative: String) -> Entry {
        let path = absolute(relative)
        var info = stat()
        guard lstat(path, &info) == 0 else {
            return errno == ENOENT || errno == ENOTDIR ? .missing : .unusable("cannot be read: \(Self.errorText(errno))")
        }
        switch info.st_mode & S_IFMT {
        case S_IFREG:
            return access(path, R_OK) == 0 ? .file(source: path) : .unusable("cannot be read: \(Self.errorText(errno))")
        case S_IFDIR:
            return access(path, R_OK | X_OK) == 0 ? .directory(source: path) : .unusable("directory cannot be read: \(Self.errorText(errno))")
        case S_IFLNK:
            return followLink(path)
        default:
            return .unusable("is not a regular file or directory (a FIFO, socket or device)")
        }
    }

    /// A link counts as its target when the target is inside the tree.
    private func followLink(_ path: String) -> Entry {
        let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? "?"
        guard let resolved = Self.realPath(path) else {
            switch errno {
            case ELOOP: return .unusable("is a symbolic link that loops (→ \(target))")
            case ENOENT, ENOTDIR: return .unusable("is a symbolic link to \(target), which does not exist")
            default: return .unusable("is a symbolic link to \(target), which cannot be read: \(Self.errorText(errno))")
            }
        }
        guard let inside = resolvedRoot, resolved == inside || resolved.hasPrefix(inside + "/") else {
            return .unusable(
                "is a symbolic link to \(resolved), outside the enclaves directory; copy the file into the tree (links are followed only inside it)")
        }
        var info = stat()
        guard stat(resolved, &info) == 0 else { return .unusable("is a symbolic link whose target cannot be read: \(Self.errorText(errno))") }
        switch info.st_mode & S_IFMT {
        case S_IFREG:
            return access(resolved, R_OK) == 0
                ? .file(source: resolved) : .unusable("is a symbolic link to \(resolved), which cannot be read: \(Self.errorText(errno))")
        case S_IFDIR:
            return .directory(source: resolved)
        default:
            return .unusable("is a symbolic link to \(resolved), which is not a regular file or directory")
        }
    }

    // MARK: Directories

    /// The names in a directory that are part of the tree, sorted; a problem when the
    /// directory itself cannot be listed.
    public func names(in relative: String) -> Result<[String], Problem> {
        do {
            return .success(try FileManager.default.contentsOfDirectory(atPath: absolute(relative)).filter(Self.isPartOfTree).sorted())
        } catch {
            return .failure(
                Problem(path: relative.isEmpty ? "." : relative, message: "the directory cannot be listed: \(error.localizedDescription)"))
        }
    }

    /// The problem with a path's depth or length, if any.
    public func boundsProblem(_ relative: String) -> Problem? {
        let depth = relative.split(separator: "/").count
        if depth > limits.maxDepth {
            return Problem(
                path: relative, message: "is \(depth) directories deep; nclav reads at most \(limits.maxDepth) levels below the enclaves directory")
        }
        if relative.utf8.count > limits.maxPathBytes {
            return Problem(
                path: String(relative.prefix(120)) + "…",
                message:
                    "the path is \(relative.utf8.count) bytes long; nclav accepts at most \(limits.maxPathBytes) bytes below the enclaves directory")
        }
        return nil
    }

    // MARK: Every file below a directory

    /// Every file below `directory` (relative to the root), following links inside the tree,
    /// in sorted order. `skip` leaves out names directly inside `directory` (`config.yml`).
    public func files(below directory: String, skip: Set<String> = []) -> Listing {
        var listing = Listing()
        guard let start = realPathOf(directory) else {
            listing.problems.append(Problem(path: directory.isEmpty ? "." : directory, message: "the directory cannot be read"))
            return listing
        }
        // Depth-first with an explicit stack; each frame carries the real paths of the
        // directories above it, so a link back to one of them is a loop, not a walk for ever.
        var stack: [(relative: String, shown: String, ancestors: Set<String>)] = [(directory, "", [start])]
        var collected: [File] = []
        while let (relative, shown, ancestors) = stack.popLast() {
            let children: [String]
            switch names(in: relative) {
            case .success(let found): children = found
            case .failure(let problem):
                listing.problems.append(problem)
                continue
            }
            var subdirectories: [(String, String, Set<String>)] = []
            for name in children {
                if shown.isEmpty && skip.contains(name) { continue }
                let path = Self.join(relative, name)
                let visible = Self.join(shown, name)
                if let problem = boundsProblem(path) {
                    listing.problems.append(problem)
                    continue
                }
                switch entry(path) {
                case .missing:
                    continue  // removed while listing
                case .unusable(let why):
                    listing.problems.append(Problem(path: path, message: why))
                case .file(let source):
                    if let reason = Self.ignoredReason(name) {
                        listing.ignored[visible] = reason
                        continue
                    }
                    guard collected.count < limits.maxFiles else {
                        listing.problems.append(
                            Problem(
                                path: directory.isEmpty ? "." : directory,
                                message: "holds more than \(limits.maxFiles) files; nclav reads at most that many"))
                        return listing
                    }
                    collected.append(File(path: visible, source: source))
                case .directory:
                    guard let real = realPathOf(path) else { continue }
                    if ancestors.contains(real) {
                        listing.problems.append(Problem(path: path, message: "is a symbolic link to a directory that contains it (a loop)"))
                        continue
                    }
                    subdirectories.append((path, visible, ancestors.union([real])))
                }
            }
            // Pushed in reverse, popped in sorted order.
            stack.append(contentsOf: subdirectories.reversed())
        }
        listing.files = collected.sorted { $0.path < $1.path }
        return listing
    }

    private func realPathOf(_ relative: String) -> String? { Self.realPath(absolute(relative)) }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    static func errorText(_ code: Int32) -> String { String(cString: strerror(code)) }
}

/// Names nclav writes at the top of every partition workspace; a partition's own file with one
/// of these names would be overwritten, so it is refused.
public enum GeneratedNames {
    public static let backendFile = "nclav_backend.tf"
    public static let contextFile = "nclav_context.auto.tfvars"
    public static let moduleFile = "nclav_module.tf"
    public static let outputsFile = "nclav_outputs.tf"
    /// A local module (`terraform.source` is a path) is copied here.
    public static let vendoredModuleDirectory = "nclav_module_source"
    public static let all: Set<String> = [backendFile, contextFile, moduleFile, outputsFile, vendoredModuleDirectory]
}
