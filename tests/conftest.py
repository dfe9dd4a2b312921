"""Shared fixtures: a guard that keeps every test off the network (127.0.0.1 only), a per-test time limit,
and a small HTTP server on 127.0.0.1 that tests fill with files and misbehaving routes."""
import hashlib, http.server, ipaddress, os, signal, socket, threading
import pytest

TEST_TIME_LIMIT = 30  # seconds; any single test taking longer is a hang, not a slow test

def pytest_configure(config):
    config.addinivalue_line('markers', 'time_limit(seconds): a longer limit for a test that runs real work on full data')

def _is_loopback(host):
    if host in ('localhost', ''): return True
    try: return ipaddress.ip_address(host.split('%')[0]).is_loopback
    except ValueError: return False  # a host name: would need DNS, i.e. the network

@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    "Refuse any INET connection that is not to the loopback interface, and ignore proxy settings."
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    def check(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(str(address[0])):
            raise RuntimeError(f'test tried to reach {address!r}; tests may only use 127.0.0.1')
    def connect(self, address):
        check(self, address)
        return real_connect(self, address)
    def connect_ex(self, address):
        check(self, address)
        return real_connect_ex(self, address)
    monkeypatch.setattr(socket.socket, 'connect', connect)
    monkeypatch.setattr(socket.socket, 'connect_ex', connect_ex)
    for var in ('http_proxy', 'https_proxy', 'all_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY'):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv('no_proxy', '*')
    monkeypatch.setenv('NO_PROXY', '*')

@pytest.fixture(autouse=True)
def time_limit(request):
    "Fail (instead of hanging) a test that runs longer than TEST_TIME_LIMIT seconds, or its `time_limit` marker's."
    if not hasattr(signal, 'SIGALRM') or threading.current_thread() is not threading.main_thread():
        yield; return
    marker = request.node.get_closest_marker('time_limit')
    limit = marker.args[0] if marker else TEST_TIME_LIMIT
    def on_alarm(signum, frame): pytest.fail(f'test ran longer than {limit} s', pytrace=True)
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit)
    try: yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def md5(data): return hashlib.md5(data).hexdigest()

def run_in_pty(code, env=None, timeout=60):
    "Run `python -c code` with a pseudo-terminal as its standard output; all it wrote, carriage returns included."
    import pty, subprocess, sys
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, '-c', code], stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    chunks = []
    while True:
        try: chunk = os.read(master, 4096)
        except OSError: break  # the program has finished and closed its end
        if not chunk: break
        chunks.append(chunk)
    os.close(master)
    assert p.wait(timeout=timeout) == 0, p.stderr.read().decode()
    return b''.join(chunks).decode()

class LocalServer:
    """What `local_server` serves. `files[path] = bytes` serves a file; `cut[path] = (bytes, declared_length)`
    sends a Content-Length of `declared_length` but only `bytes`, then closes; `stall` paths send headers
    and then nothing. Any other path is a 404. `requests` lists the paths asked for, in order."""
    def __init__(self, httpd):
        self.httpd, self.files, self.cut, self.stall, self.requests = httpd, {}, {}, set(), []
        self.stop = threading.Event()
        self.url = f'http://127.0.0.1:{httpd.server_address[1]}'

class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.0'  # one request per connection, closed after it
    def log_message(self, *args): pass
    def do_GET(self):
        srv = self.server.local
        srv.requests.append(self.path)
        if self.path in srv.files:
            body = srv.files[self.path]
            self.send_response(200)
            self.send_header('Content-Type', 'application/octet-stream')
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path in srv.cut:
            body, declared = srv.cut[self.path]
            self.send_response(200)
            self.send_header('Content-Length', str(declared))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True
        elif self.path in srv.stall:
            self.send_response(200)
            self.send_header('Content-Length', '1000')
            self.end_headers()
            self.wfile.flush()
            srv.stop.wait(10)
        else:
            self.send_error(404, 'Not Found')

@pytest.fixture
def local_server():
    "An HTTP server on 127.0.0.1 (port chosen by the OS) in a thread, stopped after the test."
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False
    httpd.local = srv = LocalServer(httpd)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)
    thread.start()
    try: yield srv
    finally:
        srv.stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
