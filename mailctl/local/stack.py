"""`mailctl local up`: a moto server on loopback, provisioned like the SAM template, plus the worker.

moto runs in this process (ThreadedMotoServer), which is what lets provisioning cut moto's own
Docker-based delivery for the event source mapping (see provision.detach_moto_invocations).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace

from mailctl.aws.session import LOCAL_CREDENTIALS, Clients
from mailctl.config import Config, LOCAL_PORT
from mailctl.errors import OperationalError
from mailctl.local import atomic_writes
from mailctl.local.provision import Provisioned, provision
from mailctl.local.ses_front import AccountOptions, SesFront
from mailctl.local.simulator import EventPublisher
from mailctl.local.worker import EventSource, Handler, LocalWorker

HOST = "127.0.0.1"
# Seconds: a failed message is back in the queue within this, and a poison message reaches the DLQ
# after max_receive_count of them (AWS would use 6x the function timeout).
LOCAL_VISIBILITY_TIMEOUT = 3
_ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_DYNAMODB",
                       "AWS_ENDPOINT_URL_SESV2", "AWS_ENDPOINT_URL_SES", "AWS_ENDPOINT_URL_LAMBDA", "AWS_ENDPOINT_URL_IAM",
                       "AWS_ENDPOINT_URL_STS")


def local_config(config: Config, endpoint: str) -> Config:
    """The operator's config (names, sender settings) pointed at the local endpoint, no profile."""
    aws = config.aws.model_copy(update={"endpoint_url": endpoint, "profile": None})
    local = config.model_copy(update={"aws": aws})
    local.source = config.source
    return local


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        # As the server will: connections of a stack that just stopped linger in TIME_WAIT and
        # must not make the port look taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def wait_until_serving(endpoint: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=2).read(0)
            return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise OperationalError(f"local stack {endpoint}: moto did not start within {timeout:.0f}s",
                                       hint="rerun with --debug; is moto[server] installed?") from None
            time.sleep(0.1)


def shell_environment(endpoint: str, config: Config) -> list[tuple[str, str]]:
    """What a second shell needs to use the stack: the endpoint (which wins over the config file),
    the config file if there is one, and credentials/region for other AWS tools (the aws CLI)."""
    env = [("AWS_ENDPOINT_URL", endpoint)]
    if config.source:
        env.append(("MAILCTL_CONFIG", os.path.abspath(config.source)))
    env += [
        ("AWS_ACCESS_KEY_ID", LOCAL_CREDENTIALS["aws_access_key_id"]),
        ("AWS_SECRET_ACCESS_KEY", LOCAL_CREDENTIALS["aws_secret_access_key"]),
        ("AWS_DEFAULT_REGION", config.aws.region),
    ]
    return env


def _hide_unimplemented(record: logging.LogRecord) -> bool:
    """moto answers an API it lacks (StartMessageMoveTask) with a 500, and werkzeug logs the
    traceback; `mailctl dlq redrive` expects that answer and falls back, so it is noise here."""
    # werkzeug puts the formatted traceback in the message itself, not in exc_info.
    message = record.getMessage()
    return not ("NotImplementedError" in message and "has not been implemented" in message)


def moto_server(port: int, front: SesFront, host: str = HOST):
    """moto's threaded server with the SES account rules in front of its app, and DynamoDB's writes
    atomic as on AWS (mailctl.local.atomic_writes)."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    class FrontedMotoServer(ThreadedMotoServer):
        # ThreadedMotoServer builds its app inside this method; the same, wrapped.
        def _server_entry(self) -> None:
            app = DomainDispatcherApplication(create_backend_app)
            app = front.wrap(app if atomic_writes.patch_moto() else atomic_writes.one_dynamodb_call_at_a_time(app))
            self._server = make_server(host, port, app, True, request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

    return FrontedMotoServer(ip_address=host, port=port, verbose=False)


@dataclass
class LocalStack:
    """Start, provision, run the worker, stop. Used by `mailctl local up` and by tests."""

    config: Config
    port: int = LOCAL_PORT
    worker: bool = True
    outbox: str | None = None
    visibility_timeout: int = LOCAL_VISIBILITY_TIMEOUT
    handler: Handler | None = None
    log: Callable[[str], None] = lambda message: None
    ses: AccountOptions | None = None  # the SES account's rate, quota, sandbox, extra identities

    def __post_init__(self) -> None:
        self.endpoint = f"http://{HOST}:{self.port}"
        self.config = local_config(self.config, self.endpoint)
        self.ses_front = SesFront(options=replace(self.ses or AccountOptions(), region=self.config.aws.region))
        self._server = None
        self._worker_thread: threading.Thread | None = None
        self._worker: LocalWorker | None = None
        self._events_worker: LocalWorker | None = None
        self._events_thread: threading.Thread | None = None
        self.events_publisher: EventPublisher | None = None
        self._stop = threading.Event()
        self._saved_env: dict[str, str | None] = {}
        self.provisioned: Provisioned | None = None

    def start(self) -> Provisioned:
        if port_in_use(self.port):
            raise OperationalError(f"local stack: {HOST}:{self.port} is already in use",
                                   hint="is another `mailctl local up` running? otherwise pass --port PORT")
        # One request line per AWS call would drown the worker's own output.
        werkzeug = logging.getLogger("werkzeug")
        werkzeug.setLevel(logging.ERROR)
        werkzeug.addFilter(_hide_unimplemented)
        self._point_process_at_stack()
        self._server = moto_server(self.port, self.ses_front)
        self._server.start()
        try:
            wait_until_serving(self.endpoint)
            self.ses_front.reset()  # the --verify identities, known to moto too
            self.log(f"moto listening on {self.endpoint}; provisioning")
            self.provisioned = provision(Clients(self.config), visibility_timeout=self.visibility_timeout)
            for warning in self.provisioned.warnings:
                self.log(f"warning: {warning}")
            # SES's side of delivery events: every accepted send's events, through the
            # configuration set's event destination and SNS, onto the events queue.
            clients = Clients(self.config)
            self.events_publisher = EventPublisher(clients.client("ses"), clients.client("sns"), region=self.config.aws.region, log=self.log)
            self.ses_front.on_accepted.append(self.events_publisher)
            if self.worker:
                self._worker = LocalWorker(Clients(self.config), handler=self.handler, outbox=self.outbox, log=self.log)
                self._worker.handler()  # an unimportable sender is an error now, not a silent thread
                self._worker_thread = threading.Thread(target=self._run_worker, args=(self._worker,), name="mailctl-local-worker", daemon=True)
                self._worker_thread.start()
                self._events_worker = LocalWorker(Clients(self.config), handler=self._events_handler(), log=self.log,
                                                  source=EventSource.events(self.config))
                self._events_thread = threading.Thread(target=self._run_worker, args=(self._events_worker,), name="mailctl-events-worker", daemon=True)
                self._events_thread.start()
        except BaseException:
            self.stop()
            raise
        return self.provisioned

    def _events_handler(self) -> Handler:
        """The events function's real handler, with its recorder pointed at this stack's table."""
        from mail_sender import events_handler
        from mail_sender.events import EventRecorder
        from mail_sender.state import StateStore

        events_handler.install(EventRecorder(StateStore(self.config.table, client=Clients(self.config).dynamodb)))
        return events_handler.lambda_handler

    def _run_worker(self, worker: LocalWorker) -> None:
        try:
            worker.run(self._stop)
        except Exception as exc:  # reported, and the stack keeps serving without a worker
            self.log(f"worker stopped: {type(exc).__name__}: {exc}")

    def _point_process_at_stack(self) -> None:
        """This process talks only to its own stack: endpoint variables from the shell must not send
        the worker's or the handler's calls elsewhere, and no real credentials need to exist."""
        wanted: dict[str, str | None] = {name: None for name in _ENDPOINT_VARIABLES}
        wanted["AWS_ENDPOINT_URL"] = self.endpoint
        wanted["AWS_PROFILE"] = None
        wanted["AWS_ACCESS_KEY_ID"] = LOCAL_CREDENTIALS["aws_access_key_id"]
        wanted["AWS_SECRET_ACCESS_KEY"] = LOCAL_CREDENTIALS["aws_secret_access_key"]
        wanted["AWS_SESSION_TOKEN"] = None
        for name, value in wanted.items():
            self._saved_env[name] = os.environ.get(name)
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def stop(self) -> None:
        self._stop.set()
        if self._worker_thread is not None:
            self._worker_thread.join(timeout=30)
            self._worker_thread = None
        if self._events_thread is not None:
            self._events_thread.join(timeout=30)
            self._events_thread = None
            from mail_sender import events_handler

            events_handler.install(None)
        if self.events_publisher is not None:
            self.ses_front.on_accepted.remove(self.events_publisher)
            self.events_publisher.close()
            self.events_publisher = None
        if self._server is not None:
            self._server.stop()
            self._server = None
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = {}

    def wait(self, stop: threading.Event) -> None:
        """Serve until `stop` is set (by a signal handler, in `local up`)."""
        while not stop.wait(0.5):
            pass

    @property
    def stats(self):
        return self._worker.stats if self._worker else None
