#!/usr/bin/env python3
"""The module graph, read from Package.swift (`swift package dump-package`).

  scripts/modules.py map              print the dependency arrows
  scripts/modules.py check            exit 1 when an import does not match Package.swift, when a
                                      layering rule is broken, or when the arrows in
                                      docs/architecture.md differ
  scripts/modules.py write-arrows     replace docs/architecture.md's arrows with the generated ones
                                      (`write-readme`, its old name, still works)

Rules checked beyond "every import is a declared dependency":
  - only NclavCLI (and tests) import NclavClient;
  - NclavCLI imports neither NclavServer nor Orchestrator;
  - no cloud driver module (NclavAWS, NclavGCP, NclavAzure) imports Orchestrator.
"""
import json, os, re, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Modules every target may import: the toolchain's, not packages.
SYSTEM = {"Foundation", "FoundationNetworking", "FoundationEssentials", "Glibc", "Musl", "Darwin", "Dispatch", "Testing",
          "XCTest", "Synchronization", "PackagePlugin", "_Concurrency", "os"}
CLOUD = {"NclavAWS", "NclavGCP", "NclavAzure"}
BEGIN, END = "<!-- module-arrows:begin (scripts/modules.py write-arrows) -->", "<!-- module-arrows:end -->"
# The document that holds the arrows, between BEGIN and END.
ARROWS_DOC = "docs/architecture.md"


def package():
    # Its own scratch path: the package's .build is locked while `swift test` runs this.
    scratch = os.path.join(tempfile.gettempdir(), f"nclav-modules-{os.getuid()}")
    text = subprocess.run(["swift", "package", "--scratch-path", scratch, "dump-package"], cwd=ROOT, capture_output=True, text=True,
                          check=True, timeout=120).stdout
    return json.loads(text)


def dependencies(target):
    names = []
    for dependency in target["dependencies"]:
        for kind in ("byName", "target", "product"):
            if kind in dependency:
                names.append(dependency[kind][0])
    return names


def target_path(target):
    if target.get("path"):
        return target["path"]
    kind = target["type"]
    return ("Tests/" if kind == "test" else "Plugins/" if kind == "plugin" else "Sources/") + target["name"]


def imports(directory):
    found = {}
    for base, _, files in os.walk(os.path.join(ROOT, directory)):
        for name in files:
            if not name.endswith(".swift"):
                continue
            path = os.path.join(base, name)
            in_literal = False  # inside a multi-line string literal (a script in a test, say)
            for number, line in enumerate(open(path, encoding="utf-8"), 1):
                if line.count('"""') % 2 == 1:
                    in_literal = not in_literal
                    continue
                if in_literal:
                    continue
                match = re.match(r"^\s*(?:@testable\s+|@_exported\s+|public\s+|internal\s+|package\s+)?import\s+(?:struct\s+|class\s+|enum\s+|func\s+)?([A-Za-z_][A-Za-z0-9_]*)", line)
                if match:
                    found.setdefault(match.group(1), []).append(f"{os.path.relpath(path, ROOT)}:{number}")
    return found


def problems(manifest):
    out = []
    for target in manifest["targets"]:
        name = target["name"]
        if target["type"] in ("plugin",):
            continue
        allowed = set(dependencies(target)) | SYSTEM | {name}
        used = imports(target_path(target))
        for module, places in sorted(used.items()):
            if module not in allowed:
                out.append(f"{places[0]}: `{name}` imports {module}, which Package.swift does not list among its dependencies")
        if target["type"] != "test":
            if "NclavClient" in used and name not in ("NclavCLI",):
                out.append(f"{used['NclavClient'][0]}: only NclavCLI imports NclavClient (the server and the engine never call themselves over HTTP)")
            if name == "NclavCLI":
                for module in ("NclavServer", "Orchestrator"):
                    if module in used:
                        out.append(f"{used[module][0]}: NclavCLI imports {module}; client commands know the API (NclavAPI), not the server or the engine")
            if name in CLOUD and "Orchestrator" in used:
                out.append(f"{used['Orchestrator'][0]}: {name} imports Orchestrator; drivers depend on NclavDrivers only")
    return out


def arrows(manifest):
    local = {t["name"] for t in manifest["targets"]}
    lines = []
    for target in manifest["targets"]:
        if target["type"] != "regular" and target["type"] != "executable":
            continue
        deps = dependencies(target)
        inside = [d for d in deps if d in local]
        outside = [d for d in deps if d not in local]
        right = ", ".join(inside + outside) or "(nothing)"
        lines.append(f"{target['name']:<17} → {right}")
    return lines


def arrows_block(manifest):
    return "\n".join([BEGIN, "```", *arrows(manifest), "```", END])


def main():
    command = sys.argv[1] if len(sys.argv) > 1 else "check"
    manifest = package()
    doc_path = os.path.join(ROOT, ARROWS_DOC)
    doc = open(doc_path, encoding="utf-8").read()
    if command == "map":
        print("\n".join(arrows(manifest)))
        return 0
    if command in ("write-arrows", "write-readme"):
        pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
        if not pattern.search(doc):
            print(f"{ARROWS_DOC} has no module-arrows block", file=sys.stderr)
            return 1
        open(doc_path, "w", encoding="utf-8").write(pattern.sub(lambda _: arrows_block(manifest), doc))
        return 0
    found = problems(manifest)
    if arrows_block(manifest) not in doc:
        found.append(f"{ARROWS_DOC}: the module arrows differ from Package.swift; run `scripts/modules.py write-arrows`")
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
