"""Small files in the real formats (IDX, CIFAR-10 binary records), and a real
HTTP server on 127.0.0.1 that serves them and can 404, cut connections, stall
or corrupt: the data the fetch, prepare and device tests use."""

import gzip
import hashlib
import io
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from pipeline.datasets import prepare, registry
from pipeline.datasets.registry import IDX_FILES, Checksum, DatasetSpec, RemoteFile


# ------------------------------------------------------------ tiny datasets
def idx_bytes(array):
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def make_idx_files(n_train=30, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test),
    }
    payloads = {name: idx_bytes(a) for name, a in arrays.items()}
    return arrays, payloads, {name: gzip.compress(p, mtime=0) for name, p in payloads.items()}


def idx_spec(payloads, urls):
    files = tuple(
        RemoteFile(n, Checksum("sha256", hashlib.sha256(payloads[n]).hexdigest(), "payload"))
        for n in IDX_FILES
    )
    return DatasetSpec(
        "tiny_mnist", "idx", files, tuple(urls), registry.MNIST_CLASSES, (28, 28, 1), "test data"
    )


def cifar_records(labels, images):
    planes = images.transpose(0, 3, 1, 2).reshape(len(labels), -1)  # R, G, B planes
    return np.concatenate([labels[:, None], planes], axis=1).astype(np.uint8).tobytes()


def make_cifar_archive(per_batch=4, seed=0, extra=()):
    rng = np.random.default_rng(seed)
    buffer, arrays = io.BytesIO(), {}
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        names = [*prepare.CIFAR_MEMBERS["train"], *prepare.CIFAR_MEMBERS["test"]]
        for name in names:
            labels = rng.integers(0, 10, per_batch)
            images = rng.integers(0, 256, (per_batch, 32, 32, 3))
            arrays[name] = (images, labels)
            payload = cifar_records(labels, images)
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
        for info, payload in extra:
            archive.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return buffer.getvalue(), arrays


def cifar_spec(archive, urls=("http://127.0.0.1:9/",)):
    checksum = Checksum("md5", hashlib.md5(archive).hexdigest(), "file")
    files = (RemoteFile("cifar-10-binary.tar.gz", checksum),)
    return DatasetSpec(
        "tiny_cifar", "cifar-binary", files, urls, registry.CIFAR10_CLASSES, (32, 32, 3), "test"
    )


# ------------------------------------------------------------ the server
class _Quiet(ThreadingHTTPServer):
    """A client that went away (as a fetch that gave up on a stall does) is the
    test's intent, not an error: no traceback. Python 3.11 parses source
    lines to print one, and its parser is not safe beside a parse in another
    thread (the suite's own, in test_layout)."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Server:
    """Routes: path -> list of behaviours, one consumed per request (the last repeats).
    ("ok", body) | ("404",) | ("500",) | ("cut", body, n_bytes) | ("stall", seconds, body).
    `close` ends every stall and waits for every request's thread."""

    def __init__(self):
        self.routes, self.requests = {}, []
        self.closing = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                plan = server.routes.get(self.path, [("404",)])
                action = plan.pop(0) if len(plan) > 1 else plan[0]
                kind = action[0]
                if kind in ("404", "500"):
                    self.send_error(int(kind))
                    return
                if kind == "stall":
                    if server.closing.wait(action[1]):
                        return
                    action = ("ok", action[2])
                body = action[1]
                start = 0
                if self.headers.get("Range") and kind == "ok":
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if kind == "cut":
                    self.wfile.write(body[: action[2]])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if kind == "stall_after":  # ("stall_after", body, bytes sent, seconds of silence after them)
                    self.wfile.write(body[: action[2]])
                    self.wfile.flush()
                    server.closing.wait(action[3])
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.httpd = _Quiet(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = False  # server_close joins them
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, prefix, files, kind="ok"):
        for name, body in files.items():
            self.routes[f"{prefix}/{name}"] = [(kind, body)]

    def close(self):
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()
