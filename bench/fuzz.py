#!/usr/bin/env python3
"""Bounded fuzzing of nclav's input paths (run on demand, never in `make test`).

Throws mutated enclaves trees at `nclav validate` and, as uploaded bundles, at
`POST /reconcile/dry-run`, and mutated requests at the HTTP API and the Terraform state
backend of a real `nclav serve`, for a fixed time. A crash (a signal, an exit code other than
0/1/2), a hang (over the time limit), a 5xx, or the server dying is a finding: it is printed
and its input saved under the output directory so it can be replayed.

Usage: bench/fuzz.py [--seconds 300] [--seed N] [--out DIR] [--nclav PATH]
Exit status: 0 when nothing was found, 1 otherwise.
"""
import argparse, base64, json, os, random, shutil, signal, socket, stat, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# os.walk recurses per directory level; mutated trees are up to ~2,000 levels deep.
sys.setrecursionlimit(20000)


def remove(path):
    """rm -rf: shutil.rmtree recurses per level too."""
    subprocess.run(["rm", "-rf", path], check=False)
SEED_TREE = os.path.join(ROOT, "examples", "local")


class Server:
    def __init__(self, nclav, home):
        self.nclav, self.home = nclav, home
        self.process = None
        self.start()

    def start(self):
        os.makedirs(self.home, exist_ok=True)
        env = dict(os.environ, NCLAV_HOME=self.home)
        env.pop("NCLAV_TOKEN", None)
        self.log = open(os.path.join(self.home, "serve.log"), "ab")
        self.process = subprocess.Popen([self.nclav, "serve", "--port", "0", "--ephemeral", "--idle-timeout", "5"],
                                        env=env, stdout=subprocess.PIPE, stderr=self.log)
        line = self.process.stdout.readline().decode()
        if "listening on" not in line:
            raise RuntimeError(f"nclav serve did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])
        self.token = open(os.path.join(self.home, "token")).read().strip()
        # Keep reading stdout so the server never blocks on a full pipe.
        self.stdout = self.process.stdout

    def alive(self):
        return self.process.poll() is None

    def stop(self):
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def raw_request(port, data, timeout=15):
    """Sends bytes, returns (status, body) or (None, reason) when no answer came."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
            if len(answer) > 4 << 20:
                break
    except socket.timeout:
        return None, "timeout"
    except OSError as error:
        return None, f"connection error: {error}"
    finally:
        s.close()
    if not answer:
        return 0, b""  # closed without an answer: refused framing, fine
    try:
        status = int(answer.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None, f"unparsable answer: {answer[:80]!r}"
    return status, answer.split(b"\r\n\r\n", 1)[-1]


def http(port, method, path, body=b"", headers=(), token=None):
    head = [f"{method} {path} HTTP/1.1", "Host: fuzz", "Connection: close", f"Content-Length: {len(body)}"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    head += list(headers)
    return raw_request(port, ("\r\n".join(head) + "\r\n\r\n").encode() + body)


# --- Tree mutations -------------------------------------------------------------------------

def files_in(tree):
    out = []
    for directory, dirs, names in os.walk(tree, followlinks=False):
        for name in names:
            out.append(os.path.join(directory, name))
    return out


def dirs_in(tree):
    return [d for d, _, _ in os.walk(tree, followlinks=False)]


def mutate_tree(tree, rng, outside):
    kind = rng.choice(["link-inside", "link-outside", "link-dangling", "link-loop", "dir-for-file", "file-for-dir",
                       "deep", "long-name", "big", "bytes", "yaml-tag", "dup-key", "empty", "fifo", "unicode",
                       "link-dir-loop", "source-outside", "chmod"])
    files, dirs = files_in(tree), dirs_in(tree)
    # Writing to a FIFO made by an earlier mutation would block: mutate regular files only.
    regular = [f for f in files if os.path.isfile(f) and not os.path.islink(f)]
    target = rng.choice(regular) if regular else None
    directory = rng.choice(dirs)
    try:
        if kind == "link-inside" and target:
            other = rng.choice(regular)
            os.remove(target)
            os.symlink(os.path.relpath(other, os.path.dirname(target)), target)
        elif kind == "link-outside" and target:
            os.remove(target)
            os.symlink(rng.choice([outside, "/etc/hostname", "/"]), target)
        elif kind == "link-dangling" and target:
            os.remove(target)
            os.symlink("nothing-here", target)
        elif kind == "link-loop" and target:
            os.remove(target)
            os.symlink(os.path.basename(target), target)
        elif kind == "link-dir-loop":
            os.symlink(".", os.path.join(directory, f"loop{rng.randrange(1000)}"))
        elif kind == "dir-for-file" and target:
            os.remove(target)
            os.makedirs(target)
        elif kind == "file-for-dir" and directory != tree:
            remove(directory)
            open(directory, "w").write("x")
        elif kind == "deep":
            path = directory
            for _ in range(rng.choice([40, 300, 2000])):
                path = os.path.join(path, "d")
                if len(path) > 3800:
                    break
                os.mkdir(path)
            open(os.path.join(path, "config.yml"), "w").write("id: deep\nname: deep\n")
        elif kind == "long-name":
            open(os.path.join(directory, "n" * rng.choice([200, 255])), "w").write("x")
        elif kind == "big" and target:
            open(target, "ab").write(os.urandom(rng.choice([1 << 16, 1 << 20, 4 << 20])))
        elif kind == "bytes" and target:
            data = bytearray(open(target, "rb").read() or b"x")
            for _ in range(rng.randrange(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            open(target, "wb").write(bytes(data))
        elif kind == "yaml-tag" and target and target.endswith(".yml"):
            open(target, "a").write("\nextra: !!python/object:os.system 'true'\n")
        elif kind == "dup-key" and target and target.endswith(".yml"):
            open(target, "a").write("\nid: again\n")
        elif kind == "empty" and target:
            open(target, "w").close()
        elif kind == "fifo":
            os.mkfifo(os.path.join(directory, f"pipe{rng.randrange(1000)}.tf"))
        elif kind == "unicode" and target and target.endswith(".yml"):
            open(target, "a", encoding="utf-8").write("\nname: \"\u202e\u0000\ud7ff\"\n")
        elif kind == "source-outside":
            config = os.path.join(directory, "config.yml")
            if os.path.isfile(config):
                open(config, "a").write(f"\nterraform:\n  source: {rng.choice([outside, '../../../../../../etc', './missing'])}\n")
        elif kind == "chmod" and target:
            os.chmod(target, 0)
    except OSError:
        pass
    return kind


def bundle_of(tree, rng):
    """The tree as the CLI would upload it, then bent: odd paths, duplicates, bad base64."""
    entries = []
    for path in files_in(tree):
        relative = os.path.relpath(path, tree)
        try:
            content = open(path, "rb").read() if os.path.isfile(path) else b""
        except OSError:
            content = b""
        entries.append({"path": relative, "content": base64.b64encode(content).decode()})
    bend = rng.random()
    if entries and bend < 0.1:
        entries.append(dict(entries[0]))
    elif entries and bend < 0.2:
        entries[0]["content"] = "%%%not-base64"
    elif bend < 0.3:
        entries.append({"path": rng.choice(["../x", "/abs", "a//b", "a/./b", "", "x\u0000y", "d/" * 3000 + "f"]), "content": "eA=="})
    elif entries and bend < 0.35:
        entries.append({"path": entries[0]["path"] + "/under-a-file", "content": "eA=="})
    body = {"bundle": entries}
    if rng.random() < 0.2:
        body["parallelism"] = rng.choice([0, -1, 10 ** 12, "two", None])
    return json.dumps(body).encode()


# --- Backend mutations ----------------------------------------------------------------------

def backend_request(rng, token):
    address = "/terraform/state/" + rng.choice(["app/api", "app/x", "a/b", "..%2F/x", "A/B", "app/api/lock", "app/api/versions",
                                                  "app/api/versions/1", "app/api/versions/99999999999999999999", "%00/x"])
    method = rng.choice(["GET", "POST", "DELETE", "LOCK", "UNLOCK", "PUT", "PATCH", "OPTIONS"])
    body = rng.choice([
        b"", b"{}", b"[]", b"null", b'{"serial":1,"lineage":"l","version":4}', b'{"serial":1,"serial":2,"lineage":"l"}',
        b'{"ID":"x","Operation":"OperationTypeApply"}', b'{"ID":1}', b'{"ID":"' + b"x" * 70000 + b'"}',
        b'{"serial":-1,"lineage":"l"}', b'{"serial":1e99,"lineage":"l"}', b"[" * 100000, os.urandom(rng.randrange(1, 2000)),
    ])
    query = rng.choice(["", "?ID=x", "?force=true", "?ID=" + "y" * 5000, "?force=maybe&ID="])
    headers = []
    if rng.random() < 0.3:
        headers.append(rng.choice(["Content-MD5: AAAA", "Content-MD5: " + "=" * 200, "Transfer-Encoding: chunked",
                                   "Content-Type: text/plain", "X-Long: " + "h" * 60000]))
    auth = rng.choice([token, token, None, "nclavrun.e30.AAAA", "x" * 10000])
    if "Transfer-Encoding: chunked" in headers:
        framing = rng.choice([b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabc\r\n0\r\n\r\n", b"ffffffffffffffff\r\n", b"5\r\nab\r\n"])
        head = [f"{method} {address}{query} HTTP/1.1", "Host: fuzz", "Connection: close"] + headers
        if auth:
            head.append(f"Authorization: Bearer {auth}")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + framing
    head = [f"{method} {address}{query} HTTP/1.1", "Host: fuzz", "Connection: close", f"Content-Length: {len(body)}"] + headers
    if auth:
        head.append(f"Authorization: Bearer {auth}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--out", default=os.path.join(ROOT, ".build", "fuzz-findings"))
    parser.add_argument("--nclav", default=os.path.join(ROOT, ".build", "debug", "nclav"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="nclav-fuzz-")
    outside = os.path.join(work, "outside")
    os.makedirs(outside)
    open(os.path.join(outside, "secret.txt"), "w").write("not part of any tree")
    server = Server(args.nclav, os.path.join(work, "home"))
    counts = dict(trees=0, validate=0, dry_run=0, backend=0)
    findings = []

    def finding(what, detail, save):
        name = f"{len(findings):03d}-{what}"
        path = os.path.join(args.out, name)
        save(path)
        findings.append(f"{name}: {detail}")
        print(f"FINDING {name}: {detail} (input saved in {path})", flush=True)

    def save_tree(tree):
        return lambda path: shutil.copytree(tree, path, symlinks=True, ignore_dangling_symlinks=True,
                                            copy_function=lambda s, d: shutil.copy2(s, d) if os.path.isfile(s) else None)

    def save_bytes(data):
        return lambda path: open(path, "wb").write(data)

    deadline = time.time() + args.seconds
    try:
        while time.time() < deadline:
            if rng.random() < 0.5:
                tree = os.path.join(work, f"tree{counts['trees']}")
                shutil.copytree(SEED_TREE, tree, symlinks=True)
                kinds = [mutate_tree(tree, rng, outside) for _ in range(rng.randrange(1, 4))]
                counts["trees"] += 1
                started = time.time()
                try:
                    done = subprocess.run([args.nclav, "validate", tree], capture_output=True, timeout=30)
                    counts["validate"] += 1
                    if done.returncode not in (0, 1, 2):
                        finding("validate-crash", f"exit {done.returncode} after {kinds}: {done.stderr[-300:]!r}", save_tree(tree))
                except subprocess.TimeoutExpired:
                    finding("validate-hang", f"over 30 s after {kinds}", save_tree(tree))
                body = bundle_of(tree, rng)
                status, answer = http(server.port, "POST", "/reconcile/dry-run", body, token=server.token)
                counts["dry_run"] += 1
                if status is None or status >= 500:
                    finding("dry-run", f"{status} {answer[:200]!r} after {kinds} ({time.time() - started:.1f} s)", save_bytes(body))
                for directory, _, names in os.walk(tree):
                    for name in names:
                        try:
                            os.chmod(os.path.join(directory, name), stat.S_IRUSR | stat.S_IWUSR)
                        except OSError:
                            pass
                remove(tree)
            else:
                request = backend_request(rng, server.token)
                status, answer = raw_request(server.port, request)
                counts["backend"] += 1
                if status is None or status >= 500:
                    finding("backend", f"{status} {answer[:200]!r}", save_bytes(request))
            if not server.alive():
                finding("server-died", f"exit {server.process.returncode}", lambda path: shutil.copy(os.path.join(server.home, "serve.log"), path))
                server.start()
    finally:
        server.stop()
        remove(work)
    print(json.dumps(dict(seed=args.seed, seconds=args.seconds, **counts, findings=len(findings))))
    for line in findings:
        print(line)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
