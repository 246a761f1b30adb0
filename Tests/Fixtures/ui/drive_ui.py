#!/usr/bin/env python3
"""Drives nclav's web UI in a real headless Chromium through the DevTools protocol.

Usage: drive_ui.py <base-url> <token> <partition-with-a-running-run> [<screenshot directory>]
       drive_ui.py <base-url> <token> --failed <failed partition> [<screenshot directory>]
       drive_ui.py <base-url> <token> --plan <plan id> [<screenshot directory>]
       drive_ui.py <base-url> <token> --reconcile <reconcile id> [<screenshot directory>]
       drive_ui.py <base-url> <token> --link <enclave/partition/runs/run id> [<screenshot directory>]
       drive_ui.py <base-url> <token> --review <running>,<drifted>,<two state versions> [<screenshot directory>]
Prints one JSON object of what it saw; exits non-zero (with the reason on stderr) when a
step never happens. Standard library only: a minimal WebSocket client is below.
"""
import base64, json, os, shutil, socket, struct, subprocess, sys, tempfile, time, urllib.request

BASE, TOKEN = sys.argv[1], sys.argv[2]
FAILED = sys.argv[3] == "--failed"
PLAN = sys.argv[3] == "--plan"
RECONCILE = sys.argv[3] == "--reconcile"
LINK = sys.argv[3] == "--link"
REVIEW = sys.argv[3] == "--review"
ARGS = sys.argv[4:] if FAILED or PLAN or RECONCILE or LINK or REVIEW else sys.argv[3:]
PARTITION = ARGS[0]
SHOTS = ARGS[1] if len(ARGS) > 1 else None


class DevTools:
    def __init__(self, ws_url):
        host_port, path = ws_url[len("ws://"):].split("/", 1)
        host, port = host_port.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(1)
        if b" 101 " not in response.split(b"\r\n")[0]:
            raise RuntimeError(f"websocket upgrade refused: {response[:200]!r}")
        self.next_id = 0

    def _send(self, text):
        payload = text.encode()
        header = bytes([0x81])
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header += bytes([0x80 | length])
        elif length < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", length)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", length)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _exact(self, count):
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise RuntimeError("DevTools connection closed")
            data += chunk
        return data

    def _receive(self):
        message = b""
        while True:
            first, second = self._exact(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._exact(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._exact(8))[0]
            payload = self._exact(length)
            opcode = first & 0x0F
            if opcode == 0x9:  # ping
                continue
            message += payload
            if first & 0x80:
                return json.loads(message.decode())

    def call(self, method, **params):
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = self._receive()
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, name):
        """Saved as a test artefact, so a failure (or a change) can be looked at."""
        if not SHOTS:
            return
        os.makedirs(SHOTS, exist_ok=True)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(os.path.join(SHOTS, name), "wb") as file:
            file.write(base64.b64decode(data))

    def wait(self, expression, what, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        snapshot = self.evaluate("JSON.stringify({detail: document.querySelector('#detail').hidden, "
                                 "title: document.querySelector('#detail-title').textContent, "
                                 "runs: [...document.querySelectorAll('#runs tbody tr')].map(r => r.dataset.status), "
                                 "log: document.querySelector('#log').dataset.state || null, errors: window.__errors || []})")
        raise RuntimeError(f"timed out waiting for {what}; page: {snapshot}")


def open_partition(tools, partition):
    """Clicks a partition's box on the graph (an SVG group, so a dispatched click)."""
    tools.evaluate(f"document.querySelector('g[data-partition={json.dumps(partition)}]')"
                   ".dispatchEvent(new MouseEvent('click', {bubbles: true})); true")


def crossings(boxes, edges):
    """Edge segments that pass through a box other than the edge's own two ends."""
    found = []
    for edge, points in edges:
        importer, exporter = edge.split("->")
        for (x1, y1), (x2, y2) in zip(points, points[1:]):
            for key, (bx, by, width, height) in boxes.items():
                if key in (importer, exporter):
                    continue
                if max(x1, x2) > bx + 1 and min(x1, x2) < bx + width - 1 and max(y1, y2) > by + 1 and min(y1, y2) < by + height - 1:
                    found.append(f"{edge} crosses {key}")
    return found


def review(tools, seen):
    """The pages a team reviews runs on: the layered graph while a run is live, a partition's
    runs (id, duration, trigger, drift), the reconcile list and page with who started each,
    a state version diff and a coloured log."""
    running, drifted, versioned = PARTITION.split(",")
    box = f"document.querySelector('g[data-partition={json.dumps(running)}]')"
    tools.wait(f"!!{box} && {box}.dataset.running !== ''", "the running partition marked on the graph")
    seen["running_mark"] = tools.evaluate(f"{box}.dataset.running")
    seen["running_note"] = tools.evaluate(f"{box}.querySelector('.partition-note').textContent")
    seen["layers"] = tools.evaluate("document.querySelector('svg#graph').dataset.layers")
    boxes = tools.evaluate("Object.fromEntries([...document.querySelectorAll('svg#graph g.partition')].map(g => [g.dataset.partition, JSON.parse(g.dataset.box)]))")
    edges = tools.evaluate("[...document.querySelectorAll('svg#graph path.edge')].map(p => [p.dataset.edge, JSON.parse(p.dataset.points)])")
    seen["boxes"] = boxes
    seen["edges_rightward"] = all(boxes[e.split("->")[0]][0] > boxes[e.split("->")[1]][0] for e, _ in edges)
    seen["edge_count"] = len(edges)
    seen["crossings"] = crossings(boxes, edges)
    seen["labels"] = tools.evaluate("[...document.querySelectorAll('svg#graph g.partition')].map(g => g.querySelector('.partition-name').textContent + ' / ' + g.querySelector('.partition-note').textContent)")
    tools.screenshot("9-graph-running.png")

    tools.wait("document.querySelectorAll('#reconcile-list tbody tr').length >= 3", "the reconcile list")
    seen["reconciles"] = tools.evaluate("[...document.querySelectorAll('#reconcile-list tbody tr')].map(r => [...r.children].map(c => c.textContent))")
    tools.evaluate("document.querySelector('#reconcile-list tr[data-kind=\"drift\"]').click(); true")
    tools.wait("!document.querySelector('#reconcile').hidden && document.querySelector('#reconcile-trigger').textContent !== ''", "the drift check's page")
    seen["drift_page_trigger"] = tools.evaluate("document.querySelector('#reconcile-trigger').textContent")
    seen["drift_page_summary"] = tools.evaluate("document.querySelector('#reconcile-summary').textContent")
    seen["drift_page_rows"] = tools.evaluate("[...document.querySelectorAll('#reconcile-partitions tbody tr')].map(r => [r.dataset.partition, r.dataset.result, r.children[1].textContent])")
    tools.screenshot("10-drift-check.png")

    open_partition(tools, drifted)
    tools.wait(f"document.querySelector('#detail-title').textContent === {json.dumps(drifted)} && !!document.querySelector('#runs tbody tr[data-result=\"drifted\"]')",
               "the drift check among the partition's runs")
    seen["runs_header"] = tools.evaluate("[...document.querySelectorAll('#runs thead th')].map(th => th.textContent)")
    seen["runs"] = tools.evaluate("[...document.querySelectorAll('#runs tbody tr')].map(r => [...r.children].map(c => c.textContent))")
    seen["run_id_title"] = tools.evaluate("document.querySelector('#runs tbody td.run-id').title")
    tools.screenshot("11-runs.png")

    open_partition(tools, versioned)
    tools.wait(f"document.querySelector('#detail-title').textContent === {json.dumps(versioned)} && !!document.querySelector('#versions button.state-diff')",
               "a state version with one before it")
    tools.evaluate("document.querySelector('#versions button.state-diff').click(); true")
    tools.wait("!document.querySelector('#state-diff').hidden && document.querySelectorAll('#state-diff-text .diff-line').length > 1", "the state diff")
    seen["state_diff_title"] = tools.evaluate("document.querySelector('#state-diff-title').textContent")
    seen["state_diff"] = tools.evaluate("[...document.querySelectorAll('#state-diff-text .diff-line')].map(d => [d.className.replace('diff-line ', ''), d.textContent])")
    tools.screenshot("12-state-diff.png")

    # The newest apply's log (a drift check's plan ran after it).
    tools.evaluate("[...document.querySelectorAll('#runs tbody tr.run')].find(r => r.children[2].textContent !== 'plan').click(); true")
    tools.wait("!document.querySelector('#log').hidden && document.querySelector('#log').dataset.state !== 'streaming'", "a run's log")
    seen["log_colours"] = tools.evaluate("[...document.querySelectorAll('#log-text span')].map(s => [s.className, s.textContent.trim()])")
    seen["log_download_text_plain"] = tools.evaluate("!/\\u001b/.test(document.querySelector('#log-text').textContent)")
    tools.screenshot("13-log-coloured.png")

    # When the apply ends, its skipped partitions are marked.
    tools.wait(f"{box}.dataset.running === '' && ![...document.querySelectorAll('#reconcile-list tbody tr')].some(r => r.lastChild.textContent === 'running')",
               "the end of the running apply", timeout=90)
    tools.wait("[...document.querySelectorAll('svg#graph g.partition')].some(g => g.dataset.lastResult !== '')", "the last apply's results on the graph")
    seen["last_results"] = tools.evaluate("Object.fromEntries([...document.querySelectorAll('svg#graph g.partition')].map(g => [g.dataset.partition, g.dataset.lastResult]))")
    tools.screenshot("14-graph-after.png")


def main():
    profile = tempfile.mkdtemp(prefix="nclav-chromium-")
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not browser:
        raise RuntimeError("chromium is not installed (scripts/setup.sh installs Debian's chromium)")
    process = subprocess.Popen([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                "--no-first-run", "--window-size=1400,1000", "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.time() + 30
        while not (os.path.exists(port_file) and open(port_file).read().count("\n") >= 1):
            if time.time() > deadline:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = open(port_file).read().split("\n")[0].strip()
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        page = next(t for t in targets if t["type"] == "page")
        tools = DevTools(page["webSocketDebuggerUrl"])
        tools.call("Page.enable")
        # Record page errors, so a failure says what broke.
        tools.call("Page.addScriptToEvaluateOnNewDocument", source="window.__errors = []; "
                   "addEventListener('error', e => __errors.push(String(e.message))); "
                   "addEventListener('unhandledrejection', e => __errors.push(String(e.reason)));")
        tools.call("Page.navigate", url=f"{BASE}/ui" + (f"#/{PARTITION}" if LINK else ""))
        seen = {}
        tools.wait("document.readyState === 'complete' && !!document.querySelector('#token')", "the login form")
        visible = "(selector => getComputedStyle(document.querySelector(selector)).display !== 'none')"
        seen["login_visible"] = tools.evaluate(f"{visible}('#login')")
        seen["app_visible_before_login"] = tools.evaluate(f"{visible}('#app')")
        tools.screenshot("1-login.png")
        tools.evaluate(f"document.querySelector('#token').value = {json.dumps(TOKEN)}; "
                       "document.querySelector('#login-form').requestSubmit(); true")
        tools.wait("document.querySelectorAll('svg#graph g.partition').length > 0", "the graph")
        seen["login_visible_after_login"] = tools.evaluate(f"{visible}('#login')")
        tools.screenshot("2-graph.png")
        seen["partitions"] = tools.evaluate(
            "[...document.querySelectorAll('svg#graph g.partition')].map(g => [g.dataset.partition, g.dataset.status])")
        seen["edges"] = tools.evaluate("[...document.querySelectorAll('svg#graph path.edge')].map(p => p.dataset.edge)")
        seen["token_in_url"] = TOKEN in tools.evaluate("location.href")
        seen["token_in_session_storage"] = tools.evaluate("sessionStorage.getItem('nclav.token')") == TOKEN
        seen["token_in_page"] = TOKEN in tools.evaluate("document.documentElement.outerHTML")
        if LINK:
            # Opened from a pasted link: after the login the run's log is on screen.
            tools.wait("!document.querySelector('#log').hidden && document.querySelector('#log').dataset.state"
                       " && document.querySelector('#log').dataset.state !== 'streaming'", "the linked run's log")
            seen["hash"] = tools.evaluate("location.hash")
            seen["log_title"] = tools.evaluate("document.querySelector('#log-title').textContent")
            seen["log_link"] = tools.evaluate("document.querySelector('#log-link').getAttribute('href')")
            seen["download_file"] = tools.evaluate("document.querySelector('#log').dataset.file")
            seen["log_has_text"] = tools.evaluate("document.querySelector('#log-text').textContent.length > 0")
            tools.screenshot("8-linked-run.png")
            print(json.dumps(seen))
            return
        if REVIEW:
            review(tools, seen)
            print(json.dumps(seen))
            return
        if RECONCILE:
            # PARTITION holds the reconcile id here.
            row = f"document.querySelector('#reconcile-list tr[data-reconcile={json.dumps(PARTITION)}]')"
            tools.wait(f"!!{row}", "the reconcile in the list")
            tools.evaluate(f"{row}.click(); true")
            tools.wait(f"!document.querySelector('#reconcile').hidden && document.querySelector('#reconcile').dataset.reconcile === {json.dumps(PARTITION)}",
                       "the reconcile's page")
            seen["summary"] = tools.evaluate("document.querySelector('#reconcile-summary').textContent")
            seen["rows"] = tools.evaluate(
                "[...document.querySelectorAll('#reconcile-partitions tbody tr')].map(r => [r.dataset.partition, r.dataset.result, "
                "r.children[1].textContent, !!r.querySelector('button.run-log')])")
            tools.screenshot("7-reconcile.png")
            tools.evaluate("document.querySelector('#reconcile-partitions button.run-log').click(); true")
            tools.wait("!document.querySelector('#log').hidden && document.querySelector('#log').dataset.state !== 'streaming'", "a run's log")
            seen["log_state"] = tools.evaluate("document.querySelector('#log').dataset.state")
            print(json.dumps(seen))
            return
        if PLAN:
            # PARTITION holds the plan id here.
            row = f"document.querySelector('#plan-list tr[data-plan={json.dumps(PARTITION)}]')"
            tools.wait(f"!!{row}", "the plan in the list of saved plans")
            seen["plan_rows"] = tools.evaluate("document.querySelectorAll('#plan-list tbody tr').length")
            seen["list_summary"] = tools.evaluate(f"{row}.children[2].textContent")
            tools.evaluate(f"{row}.click(); true")
            tools.wait(f"!document.querySelector('#plan').hidden && document.querySelector('#plan').dataset.plan === {json.dumps(PARTITION)}"
                       " && document.querySelectorAll('#plan-partitions .planned').length > 0", "the plan's page")
            seen["title"] = tools.evaluate("document.querySelector('#plan-title').textContent")
            seen["partitions"] = tools.evaluate(
                "[...document.querySelectorAll('#plan-partitions .planned')].map(b => ({partition: b.dataset.partition, "
                "deferred: b.dataset.deferred === 'true', note: b.querySelector('p').textContent, "
                "changes: [...b.querySelectorAll('li.change')].map(li => li.textContent)}))")
            seen["destructions"] = tools.evaluate("[...document.querySelectorAll('#plan-destructions li')].map(li => li.textContent)")
            tools.screenshot("6-plan.png")
            tools.evaluate("document.querySelector('#plan-partitions .planned[data-deferred=\"false\"] button.plan-log').click(); true")
            tools.wait("!document.querySelector('#log').hidden && document.querySelector('#log').dataset.state !== 'streaming'", "the plan's log")
            seen["log_state"] = tools.evaluate("document.querySelector('#log').dataset.state")
            seen["log_has_plan_line"] = tools.evaluate("/Plan: \\d+ to add/.test(document.querySelector('#log-text').textContent)")
            print(json.dumps(seen))
            return
        open_partition(tools, PARTITION)
        if FAILED:
            # A failure that started no process: no run to open, its reason on the detail.
            tools.wait(f"document.querySelector('#detail-title').textContent === {json.dumps(PARTITION)}"
                       " && !document.querySelector('#detail-error').hidden", "the failure on the partition's detail")
            seen["status"] = tools.evaluate(f"document.querySelector('g[data-partition={json.dumps(PARTITION)}]').dataset.status")
            seen["detail_error"] = tools.evaluate("document.querySelector('#detail-error').textContent")
            seen["runs_rows"] = tools.evaluate("document.querySelectorAll('#runs tbody tr').length")
            tools.screenshot("5-failed-without-run.png")
            print(json.dumps(seen))
            return
        tools.wait("!!document.querySelector('#runs tbody tr.run[data-status=\"running\"]')", "a running run in the history")
        seen["detail_title"] = tools.evaluate("document.querySelector('#detail-title').textContent")
        tools.evaluate("document.querySelector('#runs tbody tr.run[data-status=\"running\"]').click(); true")
        tools.wait("/tick-\\d/.test(document.querySelector('#log-text').textContent)", "the first log lines")
        seen["first_lines_while"] = tools.evaluate("document.querySelector('#log').dataset.state")
        tools.screenshot("3-run-live.png")
        seen["first_lines"] = tools.evaluate("document.querySelector('#log-text').textContent.split('\\n').filter(l => /tick-\\d/.test(l))")
        tools.wait("document.querySelector('#log').dataset.state !== 'streaming'", "the end of the run", timeout=60)
        seen["final_state"] = tools.evaluate("document.querySelector('#log').dataset.state")
        tools.screenshot("4-run-finished.png")
        seen["final_lines"] = tools.evaluate("document.querySelector('#log-text').textContent.split('\\n').filter(l => /tick-\\d/.test(l))")
        seen["log_status"] = tools.evaluate("document.querySelector('#log-status').textContent")
        seen["versions_rows"] = tools.evaluate("document.querySelectorAll('#versions tbody tr').length")
        print(json.dumps(seen))
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # the reason goes to the test's failure message
        print(f"drive_ui: {error}", file=sys.stderr)
        sys.exit(1)
