"""Conveniences on the generated WIT types: resource arithmetic and matching, decline filters,
task constructors. Pure: nothing here calls the host, so it runs (and is tested) on any Python.

The types are componentize-py's dataclasses; the methods below are added to its ``Resources``
class, so offers the host hands in have them too, and a value built here is exactly what crosses
the component boundary.
"""

import math
from typing import Iterable, List, Optional, Sequence, Tuple

from wit_world.imports.types import (
    CommandTask,
    Filters,
    Offer,
    Resources,
    TaskInfo,
    TaskKind_Command,
    TaskKind_Wasm,
    TaskState,
    WasmTask,
)

_U64 = (1 << 64) - 1


def _resources(millicpus: int = 0, mem_mb: int = 0, disk_mb: int = 0) -> Resources:
    for name, v in (("millicpus", millicpus), ("mem_mb", mem_mb), ("disk_mb", disk_mb)):
        if not isinstance(v, int) or v < 0 or v > _U64:
            raise ValueError(f"Resources.{name} must be a whole number in 0..2^64-1, not {v!r}")
    return Resources(millicpus=millicpus, mem_mb=mem_mb, disk_mb=disk_mb)


def _cpu_mem(millicpus: int, mem_mb: int) -> Resources:
    """CPU and memory, no disk: what most Wasm tasks ask for."""
    return _resources(millicpus, mem_mb, 0)


def _amounts(r: Resources) -> Tuple[int, int, int]:
    return (r.millicpus, r.mem_mb, r.disk_mb)


def _is_zero(self: Resources) -> bool:
    """Whether every amount is zero."""
    return _amounts(self) == (0, 0, 0)


def _fits(self: Resources, available: Resources) -> bool:
    """Whether ``self`` fits in ``available``: no amount is larger."""
    return all(a <= b for a, b in zip(_amounts(self), _amounts(available)))


def _checked_add(self: Resources, other: Resources) -> Optional[Resources]:
    """``self + other``, or ``None`` past 2^64-1 (what the WIT's u64 holds)."""
    s = [a + b for a, b in zip(_amounts(self), _amounts(other))]
    return None if max(s) > _U64 else Resources(*s)


def _checked_sub(self: Resources, other: Resources) -> Optional[Resources]:
    """``self - other``, or ``None`` if ``other`` does not fit in ``self``."""
    return Resources(*(a - b for a, b in zip(_amounts(self), _amounts(other)))) if _fits(other, self) else None


def _saturating_sub(self: Resources, other: Resources) -> Resources:
    """``self - other``, each amount stopping at zero."""
    return Resources(*(max(0, a - b) for a, b in zip(_amounts(self), _amounts(other))))


def _try_take(self: Resources, need: Resources) -> bool:
    """Takes ``need`` out of ``self`` (in place) if it fits and says whether it did: the loop
    of packing tasks into an offer (``while left.try_take(per_task): ...``)."""
    if not _fits(need, self):
        return False
    self.millicpus -= need.millicpus
    self.mem_mb -= need.mem_mb
    self.disk_mb -= need.disk_mb
    return True


def _count_in(self: Resources, available: Resources) -> int:
    """How many copies of ``self`` fit in ``available`` (2^64-1 if ``self`` is zero)."""
    counts = [have // need for need, have in zip(_amounts(self), _amounts(available)) if need > 0]
    return min(counts) if counts else _U64


def _str(self: Resources) -> str:
    """``cpus 1.5, mem 512 MiB, disk 0 MiB``."""
    whole, frac = divmod(self.millicpus, 1000)
    cpus = f"{whole}" if frac == 0 else f"{whole}.{frac:03d}".rstrip("0")
    return f"cpus {cpus}, mem {self.mem_mb} MiB, disk {self.disk_mb} MiB"


Resources.new = staticmethod(_resources)
Resources.cpu_mem = staticmethod(_cpu_mem)
Resources.is_zero = _is_zero
Resources.fits = _fits
Resources.checked_add = _checked_add
Resources.checked_sub = _checked_sub
Resources.saturating_sub = _saturating_sub
Resources.try_take = _try_take
Resources.count_in = _count_in
Resources.__str__ = _str


def refuse(seconds: float) -> Filters:
    """Filters that refuse the declined agents for ``seconds`` (negative or NaN counts as 0,
    which the master raises to its 1 s minimum; infinity as a very long time, which it caps)."""
    s = float(seconds)
    return Filters(refuse_seconds=0.0 if math.isnan(s) or s < 0 else s)


def wasm_task(
    task_id: str,
    agent_id: str,
    resources: Resources,
    executor_id: str,
    payload: bytes,
    *,
    name: Optional[str] = None,
    timeout_seconds: Optional[float] = None,
    fuel: Optional[int] = None,
) -> TaskInfo:
    """A task for this framework's own executor: runs ``payload`` (bytes, or a str sent as
    UTF-8) in executor ``executor_id`` on ``agent_id``. Its name is its id unless given.
    ``timeout_seconds`` and ``fuel`` give it its own deadline and fuel budget instead of its
    framework's (or the agent's 1 h and 10^11)."""
    if isinstance(payload, str):
        payload = payload.encode()
    return TaskInfo(
        task_id=task_id,
        name=task_id if name is None else name,
        agent_id=agent_id,
        resources=resources,
        kind=TaskKind_Wasm(
            WasmTask(
                executor_id=executor_id,
                payload=bytes(payload),
                timeout_seconds=timeout_seconds,
                fuel=fuel,
            )
        ),
    )


def command_task(
    task_id: str,
    agent_id: str,
    resources: Resources,
    argv: Sequence[str],
    env: Iterable[Tuple[str, str]] = (),
) -> TaskInfo:
    """A native command task (``argv[0]`` looked up on the agent's PATH, nothing inherited from
    the agent's environment but ``env``). Only roles the cluster's ACLs allow may run these."""
    return TaskInfo(
        task_id=task_id,
        name=task_id,
        agent_id=agent_id,
        resources=resources,
        kind=TaskKind_Command(CommandTask(argv=list(argv), env=list(env))),
    )


_TERMINAL = frozenset(
    [TaskState.FINISHED, TaskState.FAILED, TaskState.KILLED, TaskState.LOST, TaskState.ERROR]
)


def is_terminal(state: TaskState) -> bool:
    """Whether the task will not change state again (finished, failed, killed, lost, error).
    ``unreachable`` is not terminal: the agent may come back with the task running."""
    return state in _TERMINAL


def offer_ids(offers: Iterable[Offer]) -> List[str]:
    """The ids of ``offers``, for :func:`wasmos.driver.decline` and ``launch``."""
    return [o.id for o in offers]


def describe_exception(e: BaseException) -> str:
    """``"TypeName: message"`` (just the type's name when the message is empty): how the SDK
    words an exception it turns into an error result."""
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
