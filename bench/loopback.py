"""bench/loopback.py — what bench/load.py and bench/hostile.py both need to talk to a
`dfd serve` on loopback: a free port and a multipart upload body."""
import socket
import uuid


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def multipart(name, data, boundary=None, ctype="application/octet-stream"):
    """(Content-Type header, body) of a one-file multipart/form-data upload, field "file"."""
    b = boundary or uuid.uuid4().hex
    head = ('--%s\r\nContent-Disposition: form-data; name="file"; filename="%s"\r\n'
            'Content-Type: %s\r\n\r\n' % (b, name, ctype)).encode()
    return "multipart/form-data; boundary=" + b, head + data + ("\r\n--%s--\r\n" % b).encode()
