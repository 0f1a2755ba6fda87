"""A real PostgreSQL server for the tests: PTOLEMY_TEST_POSTGRES if set, else a throwaway cluster (initdb/pg_ctl)."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import psycopg2


def _find_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ThrowawayCluster:
    """initdb + pg_ctl in a temporary directory, listening on 127.0.0.1 on a free port; removed on stop."""

    def __init__(self) -> None:
        self.initdb = _find_bin("initdb")
        self.pg_ctl = _find_bin("pg_ctl")
        if not (self.initdb and self.pg_ctl):
            raise RuntimeError("initdb/pg_ctl not found (install PostgreSQL or set PTOLEMY_TEST_POSTGRES)")
        self.root = tempfile.mkdtemp(prefix="ptolemy-pg-")
        self.datadir = os.path.join(self.root, "data")
        self.port = _free_port()
        self.run_as: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and no 'postgres' user to run initdb as") from None
            os.chmod(self.root, 0o777)
            shutil.chown(self.root, "postgres")
            self.run_as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self.run_as, *cmd], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       cwd=self.root)

    def start(self, *, also_listen: str | None = None, trust_net: str | None = None) -> str:
        """`also_listen`: one more address to listen on (a veth end); `trust_net`: a CIDR let in without a
        password (the network partition test's namespace)."""
        self._run(self.initdb, "-D", self.datadir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        if trust_net:
            with open(os.path.join(self.datadir, "pg_hba.conf"), "a") as fh:
                fh.write(f"host all all {trust_net} trust\n")
        listen = "127.0.0.1" + (f",{also_listen}" if also_listen else "")
        self.opts = (f"-p {self.port} -c listen_addresses={listen} -c unix_socket_directories={self.root} "
                     "-c fsync=off")
        self._run(self.pg_ctl, "-D", self.datadir, "-o", self.opts, "-l", os.path.join(self.root, "log"), "-w", "start")
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def restart(self) -> None:
        self._run(self.pg_ctl, "-D", self.datadir, "-m", "fast", "-w", "restart")

    def stop_server(self) -> None:
        """Take the server down (clients see it unreachable) without removing the cluster."""
        self._run(self.pg_ctl, "-D", self.datadir, "-m", "fast", "-w", "stop")

    def start_server(self) -> None:
        self._run(self.pg_ctl, "-D", self.datadir, "-o", self.opts, "-l", os.path.join(self.root, "log"), "-w", "start")

    def stop(self) -> None:
        try:
            self._run(self.pg_ctl, "-D", self.datadir, "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


def _with_db(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def create_database(admin_url: str) -> str:
    name = f"ptolemy_test_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')  # an identifier we generated: cannot be a parameter
    conn.close()
    return _with_db(admin_url, name)


def drop_database(admin_url: str, url: str) -> None:
    name = url.rpartition("/")[2]
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    conn.close()


def reset_schema(url: str) -> None:
    """An empty public schema: each test starts from a fresh store without the cost of CREATE DATABASE."""
    for attempt in range(20):
        try:
            conn = psycopg2.connect(url)
            break
        except psycopg2.OperationalError:
            if attempt == 19:
                raise
            time.sleep(0.25)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        cur.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    conn.close()
