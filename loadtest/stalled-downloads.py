#!/usr/bin/env python3
"""Memory of stalled speed-test downloads (issue 23): N devices each start a speed test and
open its download without reading it; prints the server's resident memory before and after.

Usage (a server on 127.0.0.1:3900 started as below, and `pip install pynacl base58`):

    target/debug/gpu-commons --database-url sqlite:///tmp/mem/m.db --demo --demo-devices 20 \
        --demo-agents 0 --listen 127.0.0.1:3900 --log warn &
    python3 loadtest/stalled-downloads.py 40
"""
import json, socket, subprocess, sys, time, urllib.request, http.cookiejar
import base58, nacl.signing

BASE = "http://127.0.0.1:3900"
jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

def call(method, path, body=None, bearer=None):
    req = urllib.request.Request(BASE + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json", **({"authorization": "Bearer " + bearer} if bearer else {})})
    with opener.open(req) as r:
        return json.loads(r.read() or b"null")

def rss():
    pid = subprocess.check_output(["pgrep", "-f", "gpu-commons --database-url sqlite:///tmp/mem"]).split()[0].decode()
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024

key = nacl.signing.SigningKey.generate()
address = base58.b58encode(bytes(key.verify_key)).decode()
message = call("POST", "/api/v1/auth/challenge", {"address": address})["message"]
signature = base58.b58encode(key.sign(message.encode()).signature).decode()
call("POST", "/api/v1/auth/sign-in", {"message": message, "signature": signature})
n = int(sys.argv[1])
credentials = []
for i in range(n):
    ticket = call("POST", "/api/v1/worker/devices", {"name": f"m{i}", "os": "linux", "kind": "gpu", "country": "DE"})
    reg = call("POST", "/api/agent/v1/register", {"token": ticket["token"], "agent_version": "0.1.0", "simulated": True,
        "hardware": {"os": "linux", "cpu_model": "x", "cpu_cores": 8, "ram_gb": 64, "disk_gb": 100,
                     "gpus": [{"name": "NVIDIA GeForce RTX 4090", "memory_mb": 24564}]}})
    credentials.append(reg["credential"])
for c in credentials:
    call("POST", "/api/agent/v1/heartbeat", {"sent_at": int(time.time() * 1000), "agent_version": "0.1.0",
        "utilisation": {"gpu_percent": 0, "cpu_percent": 1, "memory_percent": 5}, "workloads": []}, bearer=c)
time.sleep(1)
before = rss()
held = []
for c in credentials:
    started = call("POST", "/api/agent/v1/speed-tests", bearer=c)
    s = socket.create_connection(("127.0.0.1", 3900))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(f"GET /api/agent/v1/speed-tests/{started['id']}/download HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {c}\r\n\r\n".encode())
    held.append(s)
time.sleep(5)
after = rss()
print(f"{n} stalled downloads of {started['bytes']} bytes: server RSS {before} MiB -> {after} MiB")
