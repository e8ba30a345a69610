"""gunicorn settings for Keksi: `gunicorn -c gunicorn.conf.py wsgi:app`.

Every value can be overridden on the command line or with GUNICORN_CMD_ARGS.
"""

import ctypes
import multiprocessing
import os
import signal
import sys

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# SQLite takes one writer at a time; a few sync workers keep the writer busy
# without queueing many processes on its lock.
workers = int(os.environ.get("WEB_CONCURRENCY", min(multiprocessing.cpu_count() * 2 + 1, 5)))
timeout = 30
graceful_timeout = 20
keepalive = 5
# gunicorn 27 opens a control socket in ~/.gunicorn that a second instance takes over.
control_socket_disable = True
# Request lines and headers are small in Keksi; refuse abuse early.
limit_request_line = 4094
limit_request_fields = 60
# Forwarded headers: the app's ProxyFix trusts X-Forwarded-For/-Proto/-Host from as many proxies as
# KEKSI_TRUSTED_PROXIES says. gunicorn reads X-Forwarded-Proto itself too: let it do so only when a
# proxy is configured, and only from FORWARDED_ALLOW_IPS (default: this host, where the README's
# nginx runs). Without a proxy nobody's forwarded headers count.
if os.environ.get("KEKSI_TRUSTED_PROXIES", "0").strip() in ("", "0"):
    forwarded_allow_ips = ""
else:
    forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
accesslog = "-"
# JSON lines with no client address and no query string: personal data we do not need there.
logger_class = "keksi.accesslog.JsonAccessLogger"

# prctl's option that has the kernel send a signal when the process's parent dies (Linux).
PR_SET_PDEATHSIG = 1


def post_fork(server, worker):
    """A worker whose master dies, even by SIGKILL, gets SIGTERM: it finishes the request at hand and
    exits. Otherwise a sync worker looks for its master only when no connection is waiting, so under
    load it would serve on unsupervised (no timeout, no restart) and hold the port that a restarted
    master needs. Elsewhere than on Linux gunicorn's own check stays."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != server.pid:  # the master died before prctl
        os.kill(os.getpid(), signal.SIGTERM)
