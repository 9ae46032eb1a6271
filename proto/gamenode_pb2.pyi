import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StepState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_STATE_UNSPECIFIED: _ClassVar[StepState]
    STEP_STATE_PENDING: _ClassVar[StepState]
    STEP_STATE_RUNNING: _ClassVar[StepState]
    STEP_STATE_SUCCEEDED: _ClassVar[StepState]
    STEP_STATE_FAILED: _ClassVar[StepState]
    STEP_STATE_SKIPPED: _ClassVar[StepState]
    STEP_STATE_CANCELLED: _ClassVar[StepState]
STEP_STATE_UNSPECIFIED: StepState
STEP_STATE_PENDING: StepState
STEP_STATE_RUNNING: StepState
STEP_STATE_SUCCEEDED: StepState
STEP_STATE_FAILED: StepState
STEP_STATE_SKIPPED: StepState
STEP_STATE_CANCELLED: StepState

class EndpointsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EndpointsResponse(_message.Message):
    __slots__ = ("agent_port", "mtls", "hub_version")
    AGENT_PORT_FIELD_NUMBER: _ClassVar[int]
    MTLS_FIELD_NUMBER: _ClassVar[int]
    HUB_VERSION_FIELD_NUMBER: _ClassVar[int]
    agent_port: int
    mtls: bool
    hub_version: str
    def __init__(self, agent_port: _Optional[int] = ..., mtls: _Optional[bool] = ..., hub_version: _Optional[str] = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("node_id", "token", "csr_pem")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    token: str
    csr_pem: bytes
    def __init__(self, node_id: _Optional[str] = ..., token: _Optional[str] = ..., csr_pem: _Optional[bytes] = ...) -> None: ...

class JoinResponse(_message.Message):
    __slots__ = ("certificate_pem", "ca_pem", "agent_port", "mtls")
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_PEM_FIELD_NUMBER: _ClassVar[int]
    AGENT_PORT_FIELD_NUMBER: _ClassVar[int]
    MTLS_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: bytes
    ca_pem: bytes
    agent_port: int
    mtls: bool
    def __init__(self, certificate_pem: _Optional[bytes] = ..., ca_pem: _Optional[bytes] = ..., agent_port: _Optional[int] = ..., mtls: _Optional[bool] = ...) -> None: ...

class RenewCertificate(_message.Message):
    __slots__ = ("csr_pem",)
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    csr_pem: bytes
    def __init__(self, csr_pem: _Optional[bytes] = ...) -> None: ...

class Certificate(_message.Message):
    __slots__ = ("certificate_pem",)
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: bytes
    def __init__(self, certificate_pem: _Optional[bytes] = ...) -> None: ...

class AgentMessage(_message.Message):
    __slots__ = ("seq", "hello", "heartbeat", "metrics", "inventory", "command_ack", "pipeline_event", "log_chunk", "instance_report", "renew")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ACK_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_EVENT_FIELD_NUMBER: _ClassVar[int]
    LOG_CHUNK_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_REPORT_FIELD_NUMBER: _ClassVar[int]
    RENEW_FIELD_NUMBER: _ClassVar[int]
    seq: int
    hello: Hello
    heartbeat: Heartbeat
    metrics: MetricsBatch
    inventory: Inventory
    command_ack: CommandAck
    pipeline_event: PipelineEvent
    log_chunk: LogChunk
    instance_report: InstanceReport
    renew: RenewCertificate
    def __init__(self, seq: _Optional[int] = ..., hello: _Optional[_Union[Hello, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., metrics: _Optional[_Union[MetricsBatch, _Mapping]] = ..., inventory: _Optional[_Union[Inventory, _Mapping]] = ..., command_ack: _Optional[_Union[CommandAck, _Mapping]] = ..., pipeline_event: _Optional[_Union[PipelineEvent, _Mapping]] = ..., log_chunk: _Optional[_Union[LogChunk, _Mapping]] = ..., instance_report: _Optional[_Union[InstanceReport, _Mapping]] = ..., renew: _Optional[_Union[RenewCertificate, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("node_id", "credential", "agent_version", "capabilities", "inventory", "previous_session_id", "last_command_seq", "first_unacked_seq", "certificate_pem", "proof", "proof_time_ms")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_COMMAND_SEQ_FIELD_NUMBER: _ClassVar[int]
    FIRST_UNACKED_SEQ_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    PROOF_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    credential: str
    agent_version: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    inventory: Inventory
    previous_session_id: str
    last_command_seq: int
    first_unacked_seq: int
    certificate_pem: bytes
    proof: bytes
    proof_time_ms: int
    def __init__(self, node_id: _Optional[str] = ..., credential: _Optional[str] = ..., agent_version: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., inventory: _Optional[_Union[Inventory, _Mapping]] = ..., previous_session_id: _Optional[str] = ..., last_command_seq: _Optional[int] = ..., first_unacked_seq: _Optional[int] = ..., certificate_pem: _Optional[bytes] = ..., proof: _Optional[bytes] = ..., proof_time_ms: _Optional[int] = ...) -> None: ...

class Inventory(_message.Message):
    __slots__ = ("hardware", "network")
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    hardware: _struct_pb2.Struct
    network: _struct_pb2.Struct
    def __init__(self, hardware: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., network: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("sent_at", "instances", "runtime")
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    sent_at: _timestamp_pb2.Timestamp
    instances: int
    runtime: str
    def __init__(self, sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., instances: _Optional[int] = ..., runtime: _Optional[str] = ...) -> None: ...

class MetricsBatch(_message.Message):
    __slots__ = ("samples",)
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    samples: _containers.RepeatedCompositeFieldContainer[MetricsSample]
    def __init__(self, samples: _Optional[_Iterable[_Union[MetricsSample, _Mapping]]] = ...) -> None: ...

class MetricsSample(_message.Message):
    __slots__ = ("at", "cpu_percent", "load1", "load5", "load15", "memory_total_bytes", "memory_used_bytes", "memory_percent", "disks", "nets", "gpus", "instances")
    AT_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    LOAD1_FIELD_NUMBER: _ClassVar[int]
    LOAD5_FIELD_NUMBER: _ClassVar[int]
    LOAD15_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    DISKS_FIELD_NUMBER: _ClassVar[int]
    NETS_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    cpu_percent: float
    load1: float
    load5: float
    load15: float
    memory_total_bytes: int
    memory_used_bytes: int
    memory_percent: float
    disks: _containers.RepeatedCompositeFieldContainer[DiskSample]
    nets: _containers.RepeatedCompositeFieldContainer[NetSample]
    gpus: _containers.RepeatedCompositeFieldContainer[GpuSample]
    instances: int
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cpu_percent: _Optional[float] = ..., load1: _Optional[float] = ..., load5: _Optional[float] = ..., load15: _Optional[float] = ..., memory_total_bytes: _Optional[int] = ..., memory_used_bytes: _Optional[int] = ..., memory_percent: _Optional[float] = ..., disks: _Optional[_Iterable[_Union[DiskSample, _Mapping]]] = ..., nets: _Optional[_Iterable[_Union[NetSample, _Mapping]]] = ..., gpus: _Optional[_Iterable[_Union[GpuSample, _Mapping]]] = ..., instances: _Optional[int] = ...) -> None: ...

class DiskSample(_message.Message):
    __slots__ = ("mount", "total_bytes", "used_bytes", "percent", "read_bytes_per_s", "write_bytes_per_s")
    MOUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    READ_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    WRITE_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    mount: str
    total_bytes: int
    used_bytes: int
    percent: float
    read_bytes_per_s: float
    write_bytes_per_s: float
    def __init__(self, mount: _Optional[str] = ..., total_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ..., percent: _Optional[float] = ..., read_bytes_per_s: _Optional[float] = ..., write_bytes_per_s: _Optional[float] = ...) -> None: ...

class NetSample(_message.Message):
    __slots__ = ("interface", "rx_bytes_per_s", "tx_bytes_per_s")
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    RX_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    TX_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    interface: str
    rx_bytes_per_s: float
    tx_bytes_per_s: float
    def __init__(self, interface: _Optional[str] = ..., rx_bytes_per_s: _Optional[float] = ..., tx_bytes_per_s: _Optional[float] = ...) -> None: ...

class GpuSample(_message.Message):
    __slots__ = ("index", "name", "utilization_percent", "memory_total_bytes", "memory_used_bytes", "temperature_c", "power_w")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_C_FIELD_NUMBER: _ClassVar[int]
    POWER_W_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    utilization_percent: float
    memory_total_bytes: int
    memory_used_bytes: int
    temperature_c: float
    power_w: float
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., utilization_percent: _Optional[float] = ..., memory_total_bytes: _Optional[int] = ..., memory_used_bytes: _Optional[int] = ..., temperature_c: _Optional[float] = ..., power_w: _Optional[float] = ...) -> None: ...

class CommandAck(_message.Message):
    __slots__ = ("command_id", "ok", "error", "duplicate")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    ok: bool
    error: str
    duplicate: bool
    def __init__(self, command_id: _Optional[str] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class PipelineEvent(_message.Message):
    __slots__ = ("run_id", "step", "state", "progress", "message", "at", "outputs", "attempt", "action")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    step: str
    state: StepState
    progress: int
    message: str
    at: _timestamp_pb2.Timestamp
    outputs: _struct_pb2.Struct
    attempt: int
    action: str
    def __init__(self, run_id: _Optional[str] = ..., step: _Optional[str] = ..., state: _Optional[_Union[StepState, str]] = ..., progress: _Optional[int] = ..., message: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., outputs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., attempt: _Optional[int] = ..., action: _Optional[str] = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("source", "lines")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    source: str
    lines: _containers.RepeatedCompositeFieldContainer[LogLine]
    def __init__(self, source: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[LogLine, _Mapping]]] = ...) -> None: ...

class LogLine(_message.Message):
    __slots__ = ("at", "level", "text", "stream")
    AT_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    level: str
    text: str
    stream: str
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., level: _Optional[str] = ..., text: _Optional[str] = ..., stream: _Optional[str] = ...) -> None: ...

class InstanceReport(_message.Message):
    __slots__ = ("instances", "full")
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    FULL_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[InstanceStatus]
    full: bool
    def __init__(self, instances: _Optional[_Iterable[_Union[InstanceStatus, _Mapping]]] = ..., full: _Optional[bool] = ...) -> None: ...

class InstanceStatus(_message.Message):
    __slots__ = ("instance_id", "container_id", "state", "exit_code", "run_id", "image", "started_at", "finished_at", "error")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    container_id: str
    state: str
    exit_code: int
    run_id: str
    image: str
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    error: str
    def __init__(self, instance_id: _Optional[str] = ..., container_id: _Optional[str] = ..., state: _Optional[str] = ..., exit_code: _Optional[int] = ..., run_id: _Optional[str] = ..., image: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...

class HubMessage(_message.Message):
    __slots__ = ("seq", "welcome", "ack", "command", "certificate")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    welcome: Welcome
    ack: EventAck
    command: Command
    certificate: Certificate
    def __init__(self, seq: _Optional[int] = ..., welcome: _Optional[_Union[Welcome, _Mapping]] = ..., ack: _Optional[_Union[EventAck, _Mapping]] = ..., command: _Optional[_Union[Command, _Mapping]] = ..., certificate: _Optional[_Union[Certificate, _Mapping]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("session_id", "resumed", "heartbeat_interval_ms", "metrics_interval_ms", "resume_from_seq")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    METRICS_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    RESUME_FROM_SEQ_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    resumed: bool
    heartbeat_interval_ms: int
    metrics_interval_ms: int
    resume_from_seq: int
    def __init__(self, session_id: _Optional[str] = ..., resumed: _Optional[bool] = ..., heartbeat_interval_ms: _Optional[int] = ..., metrics_interval_ms: _Optional[int] = ..., resume_from_seq: _Optional[int] = ...) -> None: ...

class EventAck(_message.Message):
    __slots__ = ("up_to_seq",)
    UP_TO_SEQ_FIELD_NUMBER: _ClassVar[int]
    up_to_seq: int
    def __init__(self, up_to_seq: _Optional[int] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("command_id", "ping", "run_pipeline", "cancel_run", "container_action", "config_update")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    RUN_PIPELINE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_RUN_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ACTION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_UPDATE_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    ping: Ping
    run_pipeline: RunPipeline
    cancel_run: CancelRun
    container_action: ContainerAction
    config_update: ConfigUpdate
    def __init__(self, command_id: _Optional[str] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ..., run_pipeline: _Optional[_Union[RunPipeline, _Mapping]] = ..., cancel_run: _Optional[_Union[CancelRun, _Mapping]] = ..., container_action: _Optional[_Union[ContainerAction, _Mapping]] = ..., config_update: _Optional[_Union[ConfigUpdate, _Mapping]] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ("sent_at",)
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    sent_at: _timestamp_pb2.Timestamp
    def __init__(self, sent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RunPipeline(_message.Message):
    __slots__ = ("run_id", "pipeline_yaml", "params", "instance_id")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_YAML_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    pipeline_yaml: str
    params: _struct_pb2.Struct
    instance_id: str
    def __init__(self, run_id: _Optional[str] = ..., pipeline_yaml: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., instance_id: _Optional[str] = ...) -> None: ...

class CancelRun(_message.Message):
    __slots__ = ("run_id", "reason")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    reason: str
    def __init__(self, run_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ContainerAction(_message.Message):
    __slots__ = ("action", "instance_id", "container_id", "tail")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTION_UNSPECIFIED: _ClassVar[ContainerAction.Action]
        ACTION_STOP: _ClassVar[ContainerAction.Action]
        ACTION_RESTART: _ClassVar[ContainerAction.Action]
        ACTION_REMOVE: _ClassVar[ContainerAction.Action]
        ACTION_LOGS: _ClassVar[ContainerAction.Action]
    ACTION_UNSPECIFIED: ContainerAction.Action
    ACTION_STOP: ContainerAction.Action
    ACTION_RESTART: ContainerAction.Action
    ACTION_REMOVE: ContainerAction.Action
    ACTION_LOGS: ContainerAction.Action
    ACTION_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    action: ContainerAction.Action
    instance_id: str
    container_id: str
    tail: int
    def __init__(self, action: _Optional[_Union[ContainerAction.Action, str]] = ..., instance_id: _Optional[str] = ..., container_id: _Optional[str] = ..., tail: _Optional[int] = ...) -> None: ...

class ConfigUpdate(_message.Message):
    __slots__ = ("heartbeat_interval_ms", "metrics_interval_ms", "settings")
    class SettingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    METRICS_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    heartbeat_interval_ms: int
    metrics_interval_ms: int
    settings: _containers.ScalarMap[str, str]
    def __init__(self, heartbeat_interval_ms: _Optional[int] = ..., metrics_interval_ms: _Optional[int] = ..., settings: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetVersionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VersionInfo(_message.Message):
    __slots__ = ("version", "api")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    API_FIELD_NUMBER: _ClassVar[int]
    version: str
    api: str
    def __init__(self, version: _Optional[str] = ..., api: _Optional[str] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("id", "name", "model", "type", "status", "location", "hardware", "network", "resources", "metrics", "labels", "online", "last_online", "created_at", "updated_at")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    LAST_ONLINE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    model: str
    type: str
    status: str
    location: str
    hardware: _struct_pb2.Struct
    network: _struct_pb2.Struct
    resources: _struct_pb2.Struct
    metrics: _struct_pb2.Struct
    labels: _containers.ScalarMap[str, str]
    online: bool
    last_online: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., model: _Optional[str] = ..., type: _Optional[str] = ..., status: _Optional[str] = ..., location: _Optional[str] = ..., hardware: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., network: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., resources: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., metrics: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., online: _Optional[bool] = ..., last_online: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ("status", "type", "location", "selector", "q", "sort", "limit", "offset")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    Q_FIELD_NUMBER: _ClassVar[int]
    SORT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    status: str
    type: str
    location: str
    selector: str
    q: str
    sort: str
    limit: int
    offset: int
    def __init__(self, status: _Optional[str] = ..., type: _Optional[str] = ..., location: _Optional[str] = ..., selector: _Optional[str] = ..., q: _Optional[str] = ..., sort: _Optional[str] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes", "total")
    NODES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    total: int
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class GetNodeRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class NodeJson(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class UpdateNodeRequest(_message.Message):
    __slots__ = ("id", "json")
    ID_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    json: str
    def __init__(self, id: _Optional[str] = ..., json: _Optional[str] = ...) -> None: ...

class DeleteNodeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UpdateNodeStatusRequest(_message.Message):
    __slots__ = ("id", "status", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., status: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class WatchNodesRequest(_message.Message):
    __slots__ = ("selector",)
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    selector: str
    def __init__(self, selector: _Optional[str] = ...) -> None: ...

class NodeUpdate(_message.Message):
    __slots__ = ("snapshot", "nodes", "deleted", "snapshot_done")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_DONE_FIELD_NUMBER: _ClassVar[int]
    snapshot: bool
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    deleted: _containers.RepeatedScalarFieldContainer[str]
    snapshot_done: bool
    def __init__(self, snapshot: _Optional[bool] = ..., nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., deleted: _Optional[_Iterable[str]] = ..., snapshot_done: _Optional[bool] = ...) -> None: ...

class GetMetricsRequest(_message.Message):
    __slots__ = ("node_id", "since", "until")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    def __init__(self, node_id: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class MetricsHistory(_message.Message):
    __slots__ = ("node_id", "samples")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    samples: _containers.RepeatedCompositeFieldContainer[MetricsSample]
    def __init__(self, node_id: _Optional[str] = ..., samples: _Optional[_Iterable[_Union[MetricsSample, _Mapping]]] = ...) -> None: ...

class StartRunRequest(_message.Message):
    __slots__ = ("node_id", "pipeline", "pipeline_yaml", "params", "instance_id")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_YAML_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    pipeline: str
    pipeline_yaml: str
    params: _struct_pb2.Struct
    instance_id: str
    def __init__(self, node_id: _Optional[str] = ..., pipeline: _Optional[str] = ..., pipeline_yaml: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., instance_id: _Optional[str] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("node_id", "instance_id", "state", "limit")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    instance_id: str
    state: str
    limit: int
    def __init__(self, node_id: _Optional[str] = ..., instance_id: _Optional[str] = ..., state: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs", "total")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[Run]
    total: int
    def __init__(self, runs: _Optional[_Iterable[_Union[Run, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class CancelRunRequest(_message.Message):
    __slots__ = ("run_id", "reason")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    reason: str
    def __init__(self, run_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("id", "node_id", "pipeline", "instance_id", "state", "error", "steps", "created_at", "started_at", "finished_at", "params")
    ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    id: str
    node_id: str
    pipeline: str
    instance_id: str
    state: str
    error: str
    steps: _containers.RepeatedCompositeFieldContainer[StepStatus]
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    params: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., node_id: _Optional[str] = ..., pipeline: _Optional[str] = ..., instance_id: _Optional[str] = ..., state: _Optional[str] = ..., error: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[StepStatus, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class StepStatus(_message.Message):
    __slots__ = ("name", "action", "state", "progress", "message", "attempt", "started_at", "finished_at", "cleanup")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    CLEANUP_FIELD_NUMBER: _ClassVar[int]
    name: str
    action: str
    state: StepState
    progress: int
    message: str
    attempt: int
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    cleanup: bool
    def __init__(self, name: _Optional[str] = ..., action: _Optional[str] = ..., state: _Optional[_Union[StepState, str]] = ..., progress: _Optional[int] = ..., message: _Optional[str] = ..., attempt: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cleanup: _Optional[bool] = ...) -> None: ...

class LogQuery(_message.Message):
    __slots__ = ("node_id", "instance_id", "run_id", "since", "until", "q", "regex", "level", "limit")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    Q_FIELD_NUMBER: _ClassVar[int]
    REGEX_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    instance_id: str
    run_id: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    q: str
    regex: bool
    level: str
    limit: int
    def __init__(self, node_id: _Optional[str] = ..., instance_id: _Optional[str] = ..., run_id: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., q: _Optional[str] = ..., regex: _Optional[bool] = ..., level: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("at", "node_id", "source", "level", "stream", "text")
    AT_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    node_id: str
    source: str
    level: str
    stream: str
    text: str
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., node_id: _Optional[str] = ..., source: _Optional[str] = ..., level: _Optional[str] = ..., stream: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class LogEntries(_message.Message):
    __slots__ = ("entries", "dropped")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LogEntry]
    dropped: int
    def __init__(self, entries: _Optional[_Iterable[_Union[LogEntry, _Mapping]]] = ..., dropped: _Optional[int] = ...) -> None: ...

class StartRolloutRequest(_message.Message):
    __slots__ = ("nodes", "selector", "all_without_agent", "action", "parallel", "canary", "trust_new_host_keys", "timeout_s", "bundle", "wheelhouse")
    NODES_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    ALL_WITHOUT_AGENT_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PARALLEL_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    TRUST_NEW_HOST_KEYS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    WHEELHOUSE_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedScalarFieldContainer[str]
    selector: str
    all_without_agent: bool
    action: str
    parallel: int
    canary: int
    trust_new_host_keys: bool
    timeout_s: float
    bundle: str
    wheelhouse: str
    def __init__(self, nodes: _Optional[_Iterable[str]] = ..., selector: _Optional[str] = ..., all_without_agent: _Optional[bool] = ..., action: _Optional[str] = ..., parallel: _Optional[int] = ..., canary: _Optional[int] = ..., trust_new_host_keys: _Optional[bool] = ..., timeout_s: _Optional[float] = ..., bundle: _Optional[str] = ..., wheelhouse: _Optional[str] = ...) -> None: ...

class GetRolloutRequest(_message.Message):
    __slots__ = ("rollout_id",)
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    def __init__(self, rollout_id: _Optional[str] = ...) -> None: ...

class Rollout(_message.Message):
    __slots__ = ("id", "action", "state", "created_at", "finished_at", "hosts", "error", "version", "started_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    action: str
    state: str
    created_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    hosts: _containers.RepeatedCompositeFieldContainer[RolloutHost]
    error: str
    version: str
    started_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., action: _Optional[str] = ..., state: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., hosts: _Optional[_Iterable[_Union[RolloutHost, _Mapping]]] = ..., error: _Optional[str] = ..., version: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RolloutHost(_message.Message):
    __slots__ = ("node_id", "host", "from_version", "to_version", "result", "error", "duration_s", "steps")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    host: str
    from_version: str
    to_version: str
    result: str
    error: str
    duration_s: float
    steps: _containers.RepeatedCompositeFieldContainer[RolloutStep]
    def __init__(self, node_id: _Optional[str] = ..., host: _Optional[str] = ..., from_version: _Optional[str] = ..., to_version: _Optional[str] = ..., result: _Optional[str] = ..., error: _Optional[str] = ..., duration_s: _Optional[float] = ..., steps: _Optional[_Iterable[_Union[RolloutStep, _Mapping]]] = ...) -> None: ...

class RolloutStep(_message.Message):
    __slots__ = ("name", "state", "message", "started_at", "finished_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: StepState
    message: str
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[StepState, str]] = ..., message: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class JsonValue(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class UpdateNodeLabelsRequest(_message.Message):
    __slots__ = ("id", "set", "remove")
    class SetEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    id: str
    set: _containers.ScalarMap[str, str]
    remove: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., set: _Optional[_Mapping[str, str]] = ..., remove: _Optional[_Iterable[str]] = ...) -> None: ...

class AgentToken(_message.Message):
    __slots__ = ("node_id", "token", "expires_at")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    token: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, node_id: _Optional[str] = ..., token: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListPipelinesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListInstancesRequest(_message.Message):
    __slots__ = ("node_id", "game", "state", "limit")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    GAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    game: str
    state: str
    limit: int
    def __init__(self, node_id: _Optional[str] = ..., game: _Optional[str] = ..., state: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListGameCardsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LaunchInstanceRequest(_message.Message):
    __slots__ = ("game", "version", "platform", "selector", "policy", "params", "node_id")
    GAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    game: str
    version: str
    platform: str
    selector: str
    policy: str
    params: _struct_pb2.Struct
    node_id: str
    def __init__(self, game: _Optional[str] = ..., version: _Optional[str] = ..., platform: _Optional[str] = ..., selector: _Optional[str] = ..., policy: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., node_id: _Optional[str] = ...) -> None: ...

class StopInstanceRequest(_message.Message):
    __slots__ = ("instance_id", "force")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    force: bool
    def __init__(self, instance_id: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class InstanceActionRequest(_message.Message):
    __slots__ = ("instance_id", "action")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    action: str
    def __init__(self, instance_id: _Optional[str] = ..., action: _Optional[str] = ...) -> None: ...

class HostKey(_message.Message):
    __slots__ = ("node_id", "host", "port", "fingerprint", "verdict")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    host: str
    port: int
    fingerprint: str
    verdict: str
    def __init__(self, node_id: _Optional[str] = ..., host: _Optional[str] = ..., port: _Optional[int] = ..., fingerprint: _Optional[str] = ..., verdict: _Optional[str] = ...) -> None: ...

class TrustHostKeyRequest(_message.Message):
    __slots__ = ("node_id", "fingerprint", "replace")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    fingerprint: str
    replace: bool
    def __init__(self, node_id: _Optional[str] = ..., fingerprint: _Optional[str] = ..., replace: _Optional[bool] = ...) -> None: ...
