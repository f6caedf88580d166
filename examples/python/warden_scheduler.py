#!/usr/bin/env python3
"""A scheduler for warden, in Python: admit, renew, follow orders, stop.

It does, for one workload, what an inference scheduler must do:

1. measure the model directory (the OMS v1.0 ``files`` SHA-256 digest that
   warden compares with the evaluation certificate) and ask
   ``Admission.Admit`` for a licence to serve it;
2. start the workload (by default ``fake_workload.py``, which prints a
   heartbeat a second);
3. renew the lease from a background thread well before it runs out;
4. follow ``Orders.WatchOrders`` from another thread, resuming after the last
   event it handled whenever the stream ends or the connection drops;
5. when an order suspends or terminates its deployment, stop the workload,
   acknowledge the order (``Orders.AckOrder``), release the deployment and
   exit. It also stops when a renewal is denied, when the lease cannot be
   renewed before it runs out, when the workload exits, and on Ctrl-C or
   SIGTERM.

The gRPC stubs are generated from the repository's ``proto/`` by grpcio-tools
at start-up, into a temporary directory that is removed on exit.

Exit status: 0 after a clean stop (an order acknowledged, a signal, the
workload ending with 0); 3 when admission or a renewal is denied, as for
``warden admit``; 1 on any other failure.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import importlib.resources
import logging
import os
import queue
import shlex
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_tools import protoc

log = logging.getLogger("scheduler")

HERE = Path(__file__).resolve().parent
REPO_PROTO_DIR = HERE.parent.parent / "proto"
FAKE_WORKLOAD = HERE / "fake_workload.py"

# The files the client needs; protoc resolves their imports from these roots.
PROTO_FILES = (
    "warden/v1/common.proto",
    "warden/v1/admission.proto",
    "warden/v1/orders.proto",
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_DENIED = 3

# Unary calls that take longer than this have failed.
RPC_TIMEOUT_SECONDS = 15.0
# Status codes worth retrying: the server or the network may recover.
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)
# Status codes a reconnecting watch cannot cure (identity, role, argument).
WATCH_FATAL = frozenset(
    {
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)

# Root-level names model-signing skips when it digests a model directory.
IGNORED_ROOT_NAMES = frozenset({".git", ".gitattributes", ".github", ".gitignore"})


class SetupError(Exception):
    """A local problem (a missing file, a bad option) that retrying cannot fix."""


class Denied(Exception):
    """Warden answered DENY; the reasons are in the message."""


# --- Why the scheduler stops ---------------------------------------------------


@dataclass(frozen=True)
class OrderStop:
    """An active order suspended or terminated this deployment."""

    order_id: str
    action: str
    target: str


@dataclass(frozen=True)
class RenewalDenied:
    reasons: tuple[str, ...]
    # A renewal denied for an order in force: the order's event is due on
    # the watch stream, and the scheduler waits for it to acknowledge.
    order_active: bool


@dataclass(frozen=True)
class LeaseLost:
    detail: str


@dataclass(frozen=True)
class WorkloadExited:
    returncode: int


@dataclass(frozen=True)
class Signalled:
    signum: int


@dataclass(frozen=True)
class WatchFailed:
    detail: str


StopReason = OrderStop | RenewalDenied | LeaseLost | WorkloadExited | Signalled | WatchFailed


def describe(reason: StopReason) -> str:
    match reason:
        case OrderStop(order_id, action, target):
            return f"order {order_id} ({action} {target}) stopped this deployment"
        case RenewalDenied(reasons, _):
            return "renewal denied: " + "; ".join(reasons)
        case LeaseLost(detail):
            return f"lease lost: {detail}"
        case WorkloadExited(returncode):
            return f"the workload exited by itself with status {returncode}"
        case Signalled(signum):
            return f"received {signal.Signals(signum).name}"
        case WatchFailed(detail):
            return f"cannot watch orders: {detail}"


# --- Options -------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    target: str
    server_name: str | None
    ca: Path
    cert: Path
    key: Path
    proto_dir: Path
    customer: str
    chain: Path
    model_dir: Path
    model_digest: str | None
    cluster: str
    region: str
    node: str
    accelerator_type: str
    accelerators: int
    endpoints: tuple[str, ...]
    renew_every: float | None
    since: int
    workload: tuple[str, ...]
    stop_grace: float
    ack_wait: float
    connect_timeout: float


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds")
    return value


def parse_options(argv: list[str] | None = None) -> tuple[Options, bool]:
    p = argparse.ArgumentParser(
        description=(
            "A scheduler for warden: admits the model, runs a workload, renews its lease, "
            "follows kill orders and stops the workload when one targets its deployment. "
            "The defaults are what `warden dev` generates and prints as its example; run "
            "both from the repository root."
        ),
        epilog=(
            "Exit status: 0 after a clean stop (order acknowledged, signal, workload "
            "exited 0), 3 when admission or a renewal is denied, 1 on other failures."
        ),
    )
    conn = p.add_argument_group("connection (mTLS, as the scheduler)")
    conn.add_argument(
        "--addr",
        metavar="HOST:PORT",
        default=os.environ.get("WARDEN_ADDR", "localhost:50051"),
        help="server address; an https:// prefix is accepted (env WARDEN_ADDR; "
        "default %(default)s)",
    )
    conn.add_argument(
        "--dev-dir",
        metavar="DIR",
        type=Path,
        default=Path(os.environ.get("WARDEN_DEV_DIR", "certs/dev")),
        help="directory `warden dev` wrote, called DEV below (env WARDEN_DEV_DIR; "
        "default %(default)s)",
    )
    conn.add_argument(
        "--ca", metavar="PEM", type=Path, help="CA of the server certificate (DEV/mtls/ca.pem)"
    )
    conn.add_argument(
        "--cert",
        metavar="PEM",
        type=Path,
        help="client certificate (DEV/mtls/clients/scheduler.pem)",
    )
    conn.add_argument(
        "--key",
        metavar="PEM",
        type=Path,
        help="client private key (DEV/mtls/clients/scheduler.key)",
    )
    conn.add_argument(
        "--server-name",
        metavar="NAME",
        help="name the server certificate must carry, if not the host in --addr "
        "(the dev certificate carries localhost, 127.0.0.1 and ::1)",
    )
    conn.add_argument(
        "--connect-timeout",
        metavar="SECONDS",
        type=positive_float,
        default=10.0,
        help="how long to wait for the server (default %(default)s)",
    )
    conn.add_argument(
        "--proto-dir",
        metavar="DIR",
        type=Path,
        default=REPO_PROTO_DIR,
        help="warden's proto/, compiled at start-up (default: the repository's)",
    )

    adm = p.add_argument_group("admission (defaults: `warden dev`'s example)")
    adm.add_argument("--customer", default="acme-ai", help="customer served (default %(default)s)")
    adm.add_argument(
        "--chain",
        metavar="PEM",
        type=Path,
        help="evaluation certificate chain (DEV/sample-model.chain.pem)",
    )
    adm.add_argument(
        "--model-dir",
        metavar="DIR",
        type=Path,
        help="model directory, measured before admission (DEV/sample-model)",
    )
    adm.add_argument(
        "--model-digest",
        metavar="sha256:HEX",
        help="send this digest instead of measuring --model-dir",
    )
    adm.add_argument("--region", default="eu-west-1", help="default %(default)s")
    adm.add_argument("--accelerators", metavar="N", type=int, default=4, help="default %(default)s")
    adm.add_argument("--accelerator-type", metavar="TYPE", default="", help="default none")
    adm.add_argument("--cluster", default="dev-cluster", help="default %(default)s")
    adm.add_argument("--node", default=socket.gethostname(), help="default: this host's name")
    adm.add_argument(
        "--endpoint",
        dest="endpoints",
        metavar="ENDPOINT",
        action="append",
        default=[],
        help="an endpoint the workload serves (repeatable)",
    )

    run = p.add_argument_group("running")
    run.add_argument(
        "--renew-every",
        metavar="SECONDS",
        type=positive_float,
        help="renew at least this often (default: whenever half the remaining lease is left)",
    )
    run.add_argument(
        "--since",
        metavar="REVISION",
        type=int,
        default=0,
        help="watch order events after this revision; 0 replays all, harmlessly: no old "
        "event can name a deployment admitted just now (default %(default)s)",
    )
    run.add_argument(
        "--workload",
        metavar="COMMAND",
        help="the workload, split as a shell would; it gets WARDEN_DEPLOYMENT_ID and "
        "WARDEN_MODEL_DIGEST in its environment (default: fake_workload.py)",
    )
    run.add_argument(
        "--stop-grace",
        metavar="SECONDS",
        type=positive_float,
        default=10.0,
        help="from SIGTERM to SIGKILL when stopping the workload (default %(default)s)",
    )
    run.add_argument(
        "--ack-wait",
        metavar="SECONDS",
        type=positive_float,
        default=15.0,
        help="after a renewal denied for an order in force, how long to wait for the "
        "order's event to acknowledge it (default %(default)s)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="log every order event")
    a = p.parse_args(argv)

    dev: Path = a.dev_dir
    target = a.addr.removeprefix("https://")
    if a.accelerators < 1:
        p.error("--accelerators must be at least 1")
    if a.since < 0:
        p.error("--since must not be negative")
    if a.workload is not None:
        workload = tuple(shlex.split(a.workload))
        if not workload:
            p.error("--workload is empty")
    else:
        workload = (sys.executable, "-u", str(FAKE_WORKLOAD))
    return (
        Options(
            target=target,
            server_name=a.server_name,
            ca=a.ca or dev / "mtls/ca.pem",
            cert=a.cert or dev / "mtls/clients/scheduler.pem",
            key=a.key or dev / "mtls/clients/scheduler.key",
            proto_dir=a.proto_dir,
            customer=a.customer,
            chain=a.chain or dev / "sample-model.chain.pem",
            model_dir=a.model_dir or dev / "sample-model",
            model_digest=a.model_digest,
            cluster=a.cluster,
            region=a.region,
            node=a.node,
            accelerator_type=a.accelerator_type,
            accelerators=a.accelerators,
            endpoints=tuple(a.endpoints),
            renew_every=a.renew_every,
            since=a.since,
            workload=workload,
            stop_grace=a.stop_grace,
            ack_wait=a.ack_wait,
            connect_timeout=a.connect_timeout,
        ),
        a.verbose,
    )


# --- Stubs, generated at start-up ----------------------------------------------


@dataclass(frozen=True)
class Api:
    """The generated modules (``*_pb2`` messages, ``*_pb2_grpc`` stubs)."""

    common: ModuleType
    admission: ModuleType
    admission_grpc: ModuleType
    orders: ModuleType
    orders_grpc: ModuleType


def load_api(proto_dir: Path, out_dir: Path) -> Api:
    """Compiles warden's protos into ``out_dir`` and imports them."""
    missing = [f for f in PROTO_FILES if not (proto_dir / f).is_file()]
    if missing:
        raise SetupError(f"--proto-dir {proto_dir}: missing {', '.join(missing)}")
    # google/protobuf/timestamp.proto ships inside grpcio-tools.
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"--proto_path={proto_dir}",
            f"--proto_path={well_known}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            *PROTO_FILES,
        ]
    )
    if status != 0:
        raise SetupError(f"protoc failed (status {status}) on {proto_dir}")
    sys.path.insert(0, str(out_dir))

    def module(name: str) -> ModuleType:
        return importlib.import_module(f"warden.v1.{name}")

    return Api(
        common=module("common_pb2"),
        admission=module("admission_pb2"),
        admission_grpc=module("admission_pb2_grpc"),
        orders=module("orders_pb2"),
        orders_grpc=module("orders_pb2_grpc"),
    )


# --- Small helpers -------------------------------------------------------------


def rpc_code(err: grpc.RpcError) -> grpc.StatusCode:
    return err.code() if isinstance(err, grpc.Call) else grpc.StatusCode.UNKNOWN


def rpc_text(err: grpc.RpcError) -> str:
    details = err.details() if isinstance(err, grpc.Call) else str(err)
    return f"{rpc_code(err).name}: {details}"


def epoch_seconds(ts: Timestamp) -> float:
    """A google.protobuf.Timestamp as seconds since the epoch."""
    return float(ts.seconds) + float(ts.nanos) / 1e9


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def reason_lines(api: Api, reasons: Any) -> tuple[str, ...]:
    return tuple(
        f"{api.admission.ReasonCode.Name(r.code).removeprefix('REASON_CODE_')} {r.message}"
        for r in reasons
    )


def read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise SetupError(f"cannot read {what} {path}: {err.strerror}") from None


class Backoff:
    """Delays between reconnections: doubling from 0.25 s to 5 s."""

    FIRST = 0.25
    MAX = 5.0

    def __init__(self) -> None:
        self._next = self.FIRST

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.MAX)
        return delay

    def reset(self) -> None:
        self._next = self.FIRST


# --- Model digest ----------------------------------------------------------------


def model_digest(root: Path) -> str:
    """The OMS v1.0 ``files`` SHA-256 root digest of a model directory.

    Every regular file is an entry (except those under the root-level git
    names), entries are ordered by path component by component, and the root
    digest is SHA-256 over the entries' raw SHA-256 digests. Symlinks and
    special files are refused, as model-signing and warden refuse them.
    """
    if root.is_symlink() or not root.is_dir():
        raise SetupError(f"--model-dir {root} is not a directory")
    entries: list[tuple[tuple[str, ...], Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise SetupError(f"{path} is a symlink; model directories must not contain any")
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise SetupError(f"{path} is not a regular file or directory")
            parts = path.relative_to(root).parts
            if parts[0] not in IGNORED_ROOT_NAMES:
                entries.append((parts, path))
    entries.sort(key=lambda entry: entry[0])
    root_hash = hashlib.sha256()
    for _, path in entries:
        with path.open("rb") as f:
            root_hash.update(hashlib.file_digest(f, "sha256").digest())
    return "sha256:" + root_hash.hexdigest()


# --- Connection ------------------------------------------------------------------


def open_channel(opts: Options) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read_file(opts.ca, "server CA"),
        private_key=read_file(opts.key, "client key"),
        certificate_chain=read_file(opts.cert, "client certificate"),
    )
    options: list[tuple[str, Any]] = [
        # Pings notice a connection that died silently, so the watch
        # reconnects instead of waiting forever.
        ("grpc.keepalive_time_ms", 15_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    if opts.server_name:
        options.append(("grpc.ssl_target_name_override", opts.server_name))
    channel = grpc.secure_channel(opts.target, credentials, options)
    try:
        grpc.channel_ready_future(channel).result(timeout=opts.connect_timeout)
    except grpc.FutureTimeoutError:
        channel.close()
        raise SetupError(
            f"cannot connect to {opts.target} within {opts.connect_timeout:g}s "
            "(is `warden dev` running? do --ca, --cert, --key and --server-name match it?)"
        ) from None
    return channel


# --- Admission -------------------------------------------------------------------


@dataclass(frozen=True)
class Admitted:
    deployment_id: str
    lease_expires_at: float
    model_digest: str


def admit(api: Api, channel: grpc.Channel, opts: Options) -> Admitted:
    digest = opts.model_digest or model_digest(opts.model_dir)
    chain = read_file(opts.chain, "certificate chain").decode("utf-8", errors="replace")
    request = api.admission.AdmitRequest(
        # The idempotency key: a retry after a lost answer gets the first
        # answer back and records nothing new.
        request_id=str(uuid.uuid4()),
        customer_id=opts.customer,
        model_digest=digest,
        certificate_chain=chain,
        workload=api.common.Workload(
            cluster=opts.cluster,
            region=opts.region,
            node=opts.node,
            accelerator_type=opts.accelerator_type,
            accelerator_count=opts.accelerators,
            endpoints=list(opts.endpoints),
        ),
    )
    stub = api.admission_grpc.AdmissionStub(channel)
    backoff = Backoff()
    attempts = 4
    for attempt in range(1, attempts + 1):
        try:
            response = stub.Admit(request, timeout=RPC_TIMEOUT_SECONDS)
            break
        except grpc.RpcError as err:
            if rpc_code(err) not in RETRYABLE or attempt == attempts:
                raise
            delay = backoff.next_delay()
            log.warning("admit: %s; retrying in %.2fs", rpc_text(err), delay)
            time.sleep(delay)
    if response.decision != api.admission.DECISION_ALLOW:
        raise Denied(
            f"admission denied (decision {response.decision_id}):\n  "
            + "\n  ".join(reason_lines(api, response.reasons))
        )
    return Admitted(
        deployment_id=response.deployment_id,
        lease_expires_at=epoch_seconds(response.lease_expires_at),
        model_digest=digest,
    )


# --- Lease renewal -------------------------------------------------------------


class Renewer(threading.Thread):
    """Renews the lease until stopped; reports a denial or a lost lease."""

    # After a failed call, try again this soon (while the lease lasts).
    RETRY_SECONDS = 2.0
    # Never wait less than this between renewals.
    MIN_INTERVAL = 0.5

    def __init__(
        self,
        api: Api,
        channel: grpc.Channel,
        admitted: Admitted,
        every: float | None,
        stops: queue.Queue[StopReason],
    ) -> None:
        super().__init__(name="renewer", daemon=True)
        self._api = api
        self._stub = api.admission_grpc.AdmissionStub(channel)
        self._deployment_id = admitted.deployment_id
        self._expires_at = admitted.lease_expires_at
        self._every = every
        self._stops = stops
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()

    def _delay(self, retrying: bool) -> float:
        remaining = self._expires_at - time.time()
        if retrying:
            return min(self.RETRY_SECONDS, max(remaining, 0.0))
        delay = remaining / 2
        if self._every is not None:
            delay = min(delay, self._every)
        return max(delay, self.MIN_INTERVAL)

    def run(self) -> None:
        retrying = False
        while not self._stopping.wait(self._delay(retrying)):
            if time.time() >= self._expires_at:
                self._stops.put(LeaseLost(f"the lease ran out at {rfc3339(self._expires_at)}"))
                return
            request = self._api.admission.RenewRequest(deployment_id=self._deployment_id)
            try:
                response = self._stub.Renew(request, timeout=RPC_TIMEOUT_SECONDS)
            except grpc.RpcError as err:
                if self._stopping.is_set():
                    return
                if rpc_code(err) not in RETRYABLE:
                    self._stops.put(LeaseLost(f"renew failed: {rpc_text(err)}"))
                    return
                log.warning(
                    "renew failed (%s); retrying until the lease runs out at %s",
                    rpc_text(err),
                    rfc3339(self._expires_at),
                )
                retrying = True
                continue
            retrying = False
            if response.decision != self._api.admission.DECISION_ALLOW:
                order_active = any(
                    r.code == self._api.admission.REASON_CODE_ORDER_ACTIVE for r in response.reasons
                )
                reasons = reason_lines(self._api, response.reasons)
                self._stops.put(RenewalDenied(reasons, order_active))
                return
            self._expires_at = epoch_seconds(response.lease_expires_at)
            log.info("renewed %s until %s", self._deployment_id, rfc3339(self._expires_at))


# --- Order watch -----------------------------------------------------------------


class OrderWatcher(threading.Thread):
    """Follows the order stream, resuming after the last event handled.

    Reports each ACTIVATED order that names this deployment; the server
    lists there every deployment the order suspended or terminated, whatever
    its target (the deployment, its model, customer, certificate or
    evaluator).
    """

    def __init__(
        self,
        api: Api,
        channel: grpc.Channel,
        deployment_id: str,
        since: int,
        stops: queue.Queue[StopReason],
    ) -> None:
        super().__init__(name="order-watch", daemon=True)
        self._api = api
        self._stub = api.orders_grpc.OrdersStub(channel)
        self._deployment_id = deployment_id
        self.cursor = since
        self._stops = stops
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._call: Any = None

    def stop(self) -> None:
        with self._lock:
            self._stopping.set()
            if self._call is not None:
                self._call.cancel()

    def run(self) -> None:
        backoff = Backoff()
        reconnecting = False
        while not self._stopping.is_set():
            request = self._api.orders.WatchOrdersRequest(since_revision=self.cursor)
            with self._lock:
                if self._stopping.is_set():
                    return
                self._call = self._stub.WatchOrders(request)
            # The server answers with headers once the stream is open; a call
            # that failed instead is already done when this returns.
            self._call.initial_metadata()
            if not self._call.done():
                if reconnecting:
                    log.info("watch: reconnected; resuming after revision %d", self.cursor)
                else:
                    log.info("watching orders after revision %d", self.cursor)
            reconnecting = True
            try:
                for event in self._call:
                    self._handle(event)
                    self.cursor = event.revision
                    backoff.reset()
                why = "the server ended the stream"
            except grpc.RpcError as err:
                if self._stopping.is_set():
                    return
                if rpc_code(err) in WATCH_FATAL:
                    self._stops.put(WatchFailed(rpc_text(err)))
                    return
                why = f"the stream ended ({rpc_text(err)})"
            delay = backoff.next_delay()
            log.warning(
                "watch: %s; reconnecting in %.2fs to resume after revision %d",
                why,
                delay,
                self.cursor,
            )
            if self._stopping.wait(delay):
                return

    def _handle(self, event: Any) -> None:
        orders = self._api.orders
        order = event.order
        action = orders.OrderAction.Name(order.action).removeprefix("ORDER_ACTION_")
        kind = orders.OrderTargetKind.Name(order.target.kind).removeprefix("ORDER_TARGET_KIND_")
        target = f"{kind.lower()}={order.target.value}"
        log.debug(
            "order event %d %s %s %s %s",
            event.revision,
            orders.OrderEventKind.Name(event.kind).removeprefix("ORDER_EVENT_KIND_"),
            order.order_id,
            action,
            target,
        )
        if (
            event.kind == orders.ORDER_EVENT_KIND_ACTIVATED
            and self._deployment_id in event.deployment_ids
        ):
            log.info(
                "order %s (%s %s) is in force for %s (revision %d)",
                order.order_id,
                action,
                target,
                self._deployment_id,
                event.revision,
            )
            self._stops.put(OrderStop(order.order_id, action, target))


# --- Workload --------------------------------------------------------------------


class Workload:
    """The process serving the model, in its own process group."""

    def __init__(self, argv: tuple[str, ...], admitted: Admitted) -> None:
        env = dict(os.environ)
        env["WARDEN_DEPLOYMENT_ID"] = admitted.deployment_id
        env["WARDEN_MODEL_DIGEST"] = admitted.model_digest
        try:
            # A session of its own: Ctrl-C in the terminal reaches only the
            # scheduler, which then stops the workload in order.
            self._proc = subprocess.Popen(argv, env=env, start_new_session=True)
        except OSError as err:
            raise SetupError(f"cannot start the workload {argv[0]}: {err.strerror}") from None
        log.info("workload started (pid %d): %s", self._proc.pid, shlex.join(argv))

    def poll(self) -> int | None:
        return self._proc.poll()

    def stop(self, grace: float) -> int:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit status."""
        if self._proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                return self._proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("workload still running %gs after SIGTERM; killing it", grace)
                self._signal(signal.SIGKILL)
        return self._proc.wait()

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(self._proc.pid, sig)


# --- Stopping --------------------------------------------------------------------


def ack(
    api: Api, channel: grpc.Channel, order: OrderStop, deployment_id: str, stopped_at: float
) -> bool:
    """Tells warden the deployment stopped; True once the order records it."""
    stub = api.orders_grpc.OrdersStub(channel)
    ts = Timestamp()
    ts.FromNanoseconds(int(stopped_at * 1e9))
    request = api.orders.AckOrderRequest(
        order_id=order.order_id,
        deployment_id=deployment_id,
        stopped_at=ts,
        outcome="stopped",
    )
    backoff = Backoff()
    for attempt in range(1, 6):
        try:
            acked = stub.AckOrder(request, timeout=RPC_TIMEOUT_SECONDS)
        except grpc.RpcError as err:
            code = rpc_code(err)
            if code == grpc.StatusCode.FAILED_PRECONDITION and "already acknowledged" in (
                err.details() if isinstance(err, grpc.Call) else ""
            ):
                # An earlier attempt landed but its answer was lost.
                log.info("order %s: %s was already acknowledged", order.order_id, deployment_id)
                return True
            if code not in RETRYABLE or attempt == 5:
                log.error("cannot acknowledge order %s: %s", order.order_id, rpc_text(err))
                return False
            time.sleep(backoff.next_delay())
            continue
        log.info(
            "acknowledged order %s for %s (stopped at %s; %d deployment(s) still unacknowledged)",
            acked.order_id,
            deployment_id,
            rfc3339(stopped_at),
            len(acked.unacknowledged),
        )
        return True
    return False


def release(api: Api, channel: grpc.Channel, deployment_id: str) -> bool:
    stub = api.admission_grpc.AdmissionStub(channel)
    try:
        response = stub.Release(
            api.admission.ReleaseRequest(deployment_id=deployment_id),
            timeout=RPC_TIMEOUT_SECONDS,
        )
    except grpc.RpcError as err:
        log.error("cannot release %s: %s", deployment_id, rpc_text(err))
        return False
    state = api.admission.DeploymentState.Name(response.deployment.state)
    log.info("released %s (now %s)", deployment_id, state.removeprefix("DEPLOYMENT_STATE_"))
    return True


class SignalFlag:
    """Remembers the first SIGINT/SIGTERM. The handler takes no lock: it runs
    in the main thread, which may be inside a queue's lock at that moment."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum


def wait_for_stop(
    stops: queue.Queue[StopReason], workload: Workload, flag: SignalFlag
) -> StopReason:
    while True:
        if flag.signum is not None:
            return Signalled(flag.signum)
        returncode = workload.poll()
        if returncode is not None:
            return WorkloadExited(returncode)
        try:
            return stops.get(timeout=0.2)
        except queue.Empty:
            continue


def drain(stops: queue.Queue[StopReason]) -> list[StopReason]:
    found: list[StopReason] = []
    while True:
        try:
            found.append(stops.get_nowait())
        except queue.Empty:
            return found


def orders_to_ack(
    first: StopReason, stops: queue.Queue[StopReason], wait: float
) -> list[OrderStop]:
    """The orders to acknowledge: the one that stopped the workload and any
    other that arrived meanwhile. After a renewal denied for an order in
    force, that order once the watch delivers it (for up to ``wait`` s)."""
    found = [r for r in [first, *drain(stops)] if isinstance(r, OrderStop)]
    if found or not (isinstance(first, RenewalDenied) and first.order_active):
        return found
    deadline = time.monotonic() + wait
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            reason = stops.get(timeout=remaining)
        except queue.Empty:
            break
        if isinstance(reason, OrderStop):
            return [reason, *(r for r in drain(stops) if isinstance(r, OrderStop))]
    log.warning("no order event named this deployment within %gs; nothing acknowledged", wait)
    return []


def exit_status(reason: StopReason, clean: bool) -> int:
    match reason:
        case RenewalDenied():
            return EXIT_DENIED
        case OrderStop() | Signalled():
            return EXIT_OK if clean else EXIT_FAILED
        case WorkloadExited(returncode):
            return EXIT_OK if clean and returncode == 0 else EXIT_FAILED
        case LeaseLost() | WatchFailed():
            return EXIT_FAILED


def serve(api: Api, opts: Options) -> int:
    channel = open_channel(opts)
    try:
        admitted = admit(api, channel, opts)
        log.info(
            "admitted: deployment %s for %s, model %s, lease until %s",
            admitted.deployment_id,
            opts.customer,
            admitted.model_digest,
            rfc3339(admitted.lease_expires_at),
        )
        flag = SignalFlag()
        flag.install()
        stops: queue.Queue[StopReason] = queue.Queue()
        watcher = OrderWatcher(api, channel, admitted.deployment_id, opts.since, stops)
        renewer = Renewer(api, channel, admitted, opts.renew_every, stops)
        try:
            workload = Workload(opts.workload, admitted)
        except SetupError:
            release(api, channel, admitted.deployment_id)
            raise
        watcher.start()
        renewer.start()

        reason = wait_for_stop(stops, workload, flag)
        log.info("stopping: %s", describe(reason))
        renewer.stop()
        returncode = workload.stop(opts.stop_grace)
        stopped_at = time.time()
        log.info("workload stopped (exit status %d)", returncode)

        clean = True
        orders = orders_to_ack(reason, stops, opts.ack_wait)
        for order in orders:
            clean &= ack(api, channel, order, admitted.deployment_id, stopped_at)
        if orders and isinstance(reason, RenewalDenied):
            # The order explains the denial: stopping for it is the clean path.
            reason = orders[0]
        clean &= release(api, channel, admitted.deployment_id)
        watcher.stop()
        renewer.join(timeout=RPC_TIMEOUT_SECONDS)
        watcher.join(timeout=RPC_TIMEOUT_SECONDS)
        status = exit_status(reason, clean)
        log.info("exiting with status %d", status)
        return status
    finally:
        channel.close()


def main(argv: list[str] | None = None) -> int:
    opts, verbose = parse_options(argv)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s scheduler: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        with tempfile.TemporaryDirectory(prefix="warden-stubs-") as stubs:
            api = load_api(opts.proto_dir, Path(stubs))
            return serve(api, opts)
    except SetupError as err:
        log.error("%s", err)
        return EXIT_FAILED
    except Denied as err:
        log.error("%s", err)
        return EXIT_DENIED
    except grpc.RpcError as err:
        log.error("%s", rpc_text(err))
        return EXIT_FAILED
    except KeyboardInterrupt:
        log.error("interrupted before the workload started")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
