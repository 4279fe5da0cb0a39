"""e2e (labels ship, e2e, api, proxy): warren over HTTPS only
(docs/transport-security.md). The test makes a CA, a certificate for
warren-api (127.0.0.1, localhost) and a wildcard one for *.warren.test
(and 127.0.0.1) with openssl; warren-api serves HTTPS itself
(api_tls_cert_file / api_tls_key_file, libmicrohttpd + GnuTLS) and
warren-proxy runs behind nginx with packaging/nginx/warren-proxy-tls.conf
(only its ports, paths and domain replaced), and a second warren-proxy
serves the wildcard certificate itself (proxy_tls_listen). Checks:
  1. the API answers over TLS 1.2+ with the certificate, and a plaintext
     request to its port gets no HTTP answer;
  2. the wildcard certificate verifies for <port>-<id>.warren.test and not
     for another domain;
  3. `warren batch` over https trusts the CA given as api_ca_file only;
  4. the unchanged npm e2b SDK, with only E2B_* and NODE_EXTRA_CA_CERTS in
     its environment, creates a sandbox, runs a command in it through the
     terminator and warren-proxy, and kills it;
  5. 2 and 4 again against warren-proxy's own TLS listener."""
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import warnings

sys.path.insert(0, os.path.dirname(__file__))
from stack import BIN, SOURCE, Stack, check, check_count, free_port, wait_for  # noqa: E402
from test_pipeline import SDK_DIR  # noqa: E402


def skip(reason):
    print("SKIP:", reason)
    sys.exit(77)


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certificates(work):
    """ca.crt, api.crt/key (127.0.0.1, localhost), wildcard.crt/key."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    p = lambda name: os.path.join(work, name)  # noqa: E731
    openssl("req", "-x509", *ec, "-days", "1", "-subj", "/CN=warren test CA", "-keyout", p("ca.key"),
            "-out", p("ca.crt"))
    for name, cn, san in (("api", "localhost", "DNS:localhost,IP:127.0.0.1"),
                          ("wildcard", "*.warren.test", "DNS:*.warren.test,DNS:warren.test,IP:127.0.0.1")):
        with open(p(name + ".ext"), "w") as f:
            f.write(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
        openssl("req", "-new", *ec, "-subj", f"/CN={cn}", "-keyout", p(name + ".key"), "-out", p(name + ".csr"))
        openssl("x509", "-req", "-in", p(name + ".csr"), "-CA", p("ca.crt"), "-CAkey", p("ca.key"),
                "-CAcreateserial", "-days", "1", "-extfile", p(name + ".ext"), "-out", p(name + ".crt"))
        os.chmod(p(name + ".key"), 0o600)


def start_nginx(work, listen_port, proxy_port):
    with open(os.path.join(SOURCE, "packaging/nginx/warren-proxy-tls.conf")) as f:
        site = f.read()
    for old, new in (("listen 443 ssl;", f"listen 127.0.0.1:{listen_port} ssl;"),
                     ("127.0.0.1:3002", f"127.0.0.1:{proxy_port}"),
                     ("/etc/warren/tls/", work + "/"), ("warren.example", "warren.test")):
        check(old in site, f"the example config has {old!r}")
        site = site.replace(old, new)
    with open(os.path.join(work, "site.conf"), "w") as f:
        f.write(site)
    os.makedirs(os.path.join(work, "nginx-tmp"), exist_ok=True)
    with open(os.path.join(work, "nginx.conf"), "w") as f:
        f.write(f"""user root;
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
	access_log off;
	client_body_temp_path {work}/nginx-tmp/body;
	proxy_temp_path {work}/nginx-tmp/proxy;
	fastcgi_temp_path {work}/nginx-tmp/fastcgi;
	uwsgi_temp_path {work}/nginx-tmp/uwsgi;
	scgi_temp_path {work}/nginx-tmp/scgi;
	include {work}/site.conf;
}}
""")
    nginx = subprocess.Popen(["nginx", "-p", work, "-c", os.path.join(work, "nginx.conf")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    wait_for(lambda: nginx.poll() is not None or subprocess.run(
        ["ss", "-ltn", f"sport = :{listen_port}"], capture_output=True, text=True).stdout.count("LISTEN") > 0,
        30, "nginx to listen")
    check(nginx.poll() is None, "nginx runs the example config: " + (nginx.stderr.read().decode()
                                                                     if nginx.poll() is not None else ""))
    return nginx


def api_checks(stack, ca):
    context = ssl.create_default_context(cafile=ca)
    connection = http.client.HTTPSConnection("127.0.0.1", stack.api_port, context=context, timeout=20)
    connection.request("GET", "/health")
    response = connection.getresponse()
    response.read()
    version = connection.sock.version()
    connection.close()
    check(response.status == 200, f"GET /health over https -> {response.status}")
    check(version in ("TLSv1.2", "TLSv1.3"), f"TLS version {version}")
    # A client that offers TLS 1.0/1.1 only (security level 0 lets
    # OpenSSL 3 offer them): the server's GnuTLS priorities must refuse.
    old = ssl.create_default_context(cafile=ca)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        with socket.create_connection(("127.0.0.1", stack.api_port), timeout=10) as raw:
            with old.wrap_socket(raw, server_hostname="127.0.0.1"):
                refused = False
    except (ssl.SSLError, OSError):
        refused = True
    check(refused, "TLS 1.1 is refused")
    with socket.create_connection(("127.0.0.1", stack.api_port), timeout=10) as raw:
        raw.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        raw.settimeout(10)
        try:
            answer = raw.recv(64)
        except (socket.timeout, ConnectionResetError):
            answer = b""
    check(not answer.startswith(b"HTTP/"), f"plaintext on the TLS port gets no HTTP answer: {answer!r}")
    print(f"api: https with {version}; TLS 1.1 and plaintext refused")


def wildcard_checks(port, ca, what):
    context = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="49983-iabcdefghijklmnopqrst.warren.test") as tls:
            check(tls.version() in ("TLSv1.2", "TLSv1.3"), "the wildcard verifies for <port>-<id>.warren.test")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="49983-iabc.other.test"):
                wrong = True
    except ssl.SSLCertVerificationError:
        wrong = False
    check(not wrong, "the wildcard does not verify for another domain")
    print(f"{what}: the *.warren.test certificate verifies, another domain does not")


def sdk_over_https(stack, https_port, ca, proxy_name):
    env = {"E2B_API_KEY": stack.api_key, "E2B_API_URL": f"https://127.0.0.1:{stack.api_port}",
           "E2B_SANDBOX_URL": f"https://127.0.0.1:{https_port}", "E2B_DOMAIN": "warren.test",
           "NODE_EXTRA_CA_CERTS": ca}
    out = subprocess.run([shutil.which("node"), os.path.join(os.path.dirname(__file__), "sdk_https.cjs"), SDK_DIR],
                         env=env, capture_output=True, text=True, timeout=180)
    check(out.returncode == 0, "the SDK over https:\n" + out.stdout + out.stderr + stack.log(proxy_name)[-2000:])
    print(out.stdout.strip())


def batch_over_https(stack, ca):
    """`warren batch` (libcurl) trusts the API's CA through api_ca_file only."""
    def batch(*args, ca_file=None):
        env = stack.env(E2B_API_KEY=stack.api_key, WARREN_API_URL=f"https://127.0.0.1:{stack.api_port}")
        env.pop("WARREN_API_CA_FILE", None)
        if ca_file:
            env["WARREN_API_CA_FILE"] = ca_file
        out = subprocess.run([os.path.join(BIN, "warren"), "batch", *args, "--json"], env=env,
                             capture_output=True, text=True, timeout=120)
        try:
            return out.returncode, json.loads(out.stdout)
        except ValueError:
            return out.returncode, {"raw": out.stdout + out.stderr}

    rc, result = batch("create", "--count", "1", "--template", "minimal", "--metadata", "job=no-ca")
    check(rc != 0 and result.get("created", 0) == 0, f"without the CA the batch fails: {result}")
    rc, result = batch("create", "--count", "2", "--template", "minimal", "--timeout", "120",
                       "--metadata", "job=https", ca_file=ca)
    check(rc == 0 and result["created"] == 2, f"batch create over https: {result}")
    rc, result = batch("kill", "--metadata", "job=https", ca_file=ca)
    check(rc == 0 and result["killed"] == 2, f"batch kill over https: {result}")
    print("warren batch over https: refused without api_ca_file, 2 created and killed with it")


def main():
    if os.geteuid() != 0:
        skip("needs root (namespaces, cgroups)")
    if not os.environ.get("WARREN_PG_URL") or not os.environ.get("WARREN_KAFKA_BROKERS"):
        skip("WARREN_PG_URL / WARREN_KAFKA_BROKERS unset (eval \"$(scripts/dev-stack env)\")")
    for tool in ("openssl", "nginx", "node"):
        if not shutil.which(tool):
            skip(f"{tool} is not installed (scripts/setup)")
    if not os.path.isdir(os.path.join(SDK_DIR, "node_modules", "e2b")):
        skip(f"the npm e2b SDK is not in {SDK_DIR} (scripts/setup)")
    work = tempfile.mkdtemp(prefix="warren-https-")
    nginx = None
    try:
        make_certificates(work)
        ca = os.path.join(work, "ca.crt")
        with Stack("https", extra_env={"WARREN_API_TLS_CERT_FILE": os.path.join(work, "api.crt"),
                                       "WARREN_API_TLS_KEY_FILE": os.path.join(work, "api.key"),
                                       "WARREN_PROXY_FORWARDED_PROTO": "https"}) as stack:
            stack.start()
            stack.wait_log("api", "with TLS", 10)
            api_checks(stack, ca)
            batch_over_https(stack, ca)
            proxy_port, nginx_port = free_port(), free_port()
            stack.spawn("proxy", "warren-proxy", WARREN_PROXY_LISTEN=f"127.0.0.1:{proxy_port}")
            nginx = start_nginx(work, nginx_port, proxy_port)
            wildcard_checks(nginx_port, ca, "nginx in front of warren-proxy")
            sdk_over_https(stack, nginx_port, ca, "proxy")
            tls_port = free_port()
            stack.spawn("proxy-tls", "warren-proxy", WARREN_PROXY_LISTEN=f"127.0.0.1:{free_port()}",
                        WARREN_PROXY_TLS_LISTEN=f"127.0.0.1:{tls_port}",
                        WARREN_PROXY_TLS_CERT_FILE=os.path.join(work, "wildcard.crt"),
                        WARREN_PROXY_TLS_KEY_FILE=os.path.join(work, "wildcard.key"))
            stack.wait_log("proxy-tls", "with TLS", 10)
            wildcard_checks(tls_port, ca, "warren-proxy's own TLS")
            sdk_over_https(stack, tls_port, ca, "proxy-tls")
    finally:
        if nginx and nginx.poll() is None:
            os.killpg(nginx.pid, 15)
            nginx.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    print(f"e2e https: {check_count()} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
