import Foundation
import Subprocess
import SystemPackage

/// A tool run in the foreground for a person at a terminal (`nclav bootstrap`): stdin, stdout
/// and stderr are this process's own, so terraform's approval prompt works as usual.
public enum InteractiveCommand {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Runs attached to the terminal; returns the exit code (128 + n for a signal).
    public static func run(_ executable: String, _ arguments: [String], in directory: URL) async throws -> Int32 {
        do {
            let result = try await Subprocess.run(
                .path(FilePath(executable)), arguments: Arguments(arguments), workingDirectory: FilePath(directory.path),
                input: .currentStandardInput, output: .currentStandardOutput, error: .currentStandardError)
            return code(result.terminationStatus)
        } catch {
            throw Failure(description: "could not start \(executable): \(error)")
        }
    }

    /// Runs and returns what the tool printed on stdout (stderr still reaches the terminal).
    public static func capture(_ executable: String, _ arguments: [String], in directory: URL) async throws -> (exitCode: Int32, output: String) {
        do {
            let result = try await Subprocess.run(
                .path(FilePath(executable)), arguments: Arguments(arguments), workingDirectory: FilePath(directory.path),
                input: .none, output: .string(limit: 16 * 1024 * 1024), error: .currentStandardError)
            return (code(result.terminationStatus), result.standardOutput)
        } catch {
            throw Failure(description: "could not start \(executable): \(error)")
        }
    }

    private static func code(_ status: TerminationStatus) -> Int32 {
        switch status {
        case .exited(let code): return code
        case .signaled(let signal): return 128 + signal
        }
    }
}
