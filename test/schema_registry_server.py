#!/usr/bin/python3
"""A Confluent-compatible schema registry for the tests, on loopback:
GET /schemas/ids/<id> answers {"schema": <the text of DIR/<id>.avsc>} or
404 {"error_code": 40403, ...}; GET /requests answers how many schema
requests it served.  With a third argument USER:PASSWORD it requires that
basic authentication (401 otherwise).

    schema_registry_server.py DIR PORT_FILE [USER:PASSWORD]

listens on an ephemeral port of 127.0.0.1 and writes it to PORT_FILE.
"""
import base64
import http.server
import json
import os
import sys

directory, port_file = sys.argv[1], sys.argv[2]
auth = sys.argv[3] if len(sys.argv) > 3 else None
served = 0


class Registry(http.server.BaseHTTPRequestHandler):
    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        global served
        if self.path == "/requests":
            return self.answer(200, {"requests": served})
        if auth is not None:
            want = "Basic " + base64.b64encode(auth.encode()).decode()
            if self.headers.get("Authorization") != want:
                return self.answer(401, {"error_code": 40101, "message": "Unauthorized"})
        parts = self.path.split("/")
        if len(parts) != 4 or parts[1] != "schemas" or parts[2] != "ids" or not parts[3].isdigit():
            return self.answer(404, {"error_code": 404, "message": "HTTP 404 Not Found"})
        served += 1
        path = os.path.join(directory, parts[3] + ".avsc")
        if not os.path.exists(path):
            return self.answer(404, {"error_code": 40403, "message": "Schema not found"})
        with open(path) as f:
            return self.answer(200, {"schema": f.read()})

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Registry)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
