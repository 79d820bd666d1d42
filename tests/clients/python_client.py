# A real Python client (httpx when installed, else requests), run under the system python3:
#   python3 python_client.py <stream|abort> <baseURL>
# Prints each SSE line as it arrives (flushed); in abort mode it closes the response after the
# first text event (its data line) and prints ABORTED.
import sys

mode, base = sys.argv[1], sys.argv[2]
body = {"model": "fake-model", "input": "Say hello", "stream": True}
headers = {"authorization": "Bearer sk-client-own-key"}

def consume(lines):
    for line in lines:
        if not line:
            continue
        print(line, flush=True)
        if mode == "abort" and line.startswith("data:") and "output_text.delta" in line:
            print("ABORTED", flush=True)
            return True
    return False

try:
    import httpx
    print("LIBRARY httpx", flush=True)
    with httpx.Client(timeout=None) as client:
        with client.stream("POST", base + "/responses", json=body, headers=headers) as res:
            print("STATUS", res.status_code, flush=True)
            consume(res.iter_lines())  # leaving the block closes the connection
except ImportError:
    import requests
    print("LIBRARY requests", flush=True)
    with requests.post(base + "/responses", json=body, headers=headers, stream=True) as res:
        print("STATUS", res.status_code, flush=True)
        consume(res.iter_lines(decode_unicode=True))
