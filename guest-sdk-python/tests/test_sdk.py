"""Unit tests of the SDK on the host's Python, against the bindings componentize-py generates
(``componentize-py -d wit -w framework bindings DIR``; DIR goes on PYTHONPATH). The host imports
are replaced by recorders, so what the SDK asks of the master is checked without a component.

Run: ``cli/tests/python.rs`` runs them (``sdk_unit_tests_pass``), or by hand
``PYTHONPATH=BINDINGS:guest-sdk-python python3 -m unittest discover guest-sdk-python/tests``.
"""

import io
import math
import sys
import unittest
from contextlib import redirect_stderr

from componentize_py_types import Err, Ok
from wit_world.imports import driver as imports

import wasmos
from wasmos import Resources, TaskState


class Recorder:
    """Stands in for the host's driver imports and records the calls."""

    def __init__(self):
        self.calls = []
        self.saved = {}
        for name in ("launch", "decline", "suppress", "revive", "log", "finish", "set_timer"):
            self.saved[name] = getattr(imports, name)
            setattr(imports, name, self._record(name))

    def _record(self, name):
        def f(*args):
            self.calls.append((name,) + args)

        return f

    def restore(self):
        for name, f in self.saved.items():
            setattr(imports, name, f)


def offer(i, cpus=1000, mem=1024):
    return wasmos.Offer(
        id=f"o{i}", agent_id=f"a{i}", hostname="h", resources=Resources(cpus, mem, 0), attributes=[]
    )


class ResourcesTest(unittest.TestCase):
    def test_fits_and_take(self):
        per_task = Resources.cpu_mem(100, 32)
        left = Resources.new(350, 1000, 5)
        n = 0
        while left.try_take(per_task):
            n += 1
        self.assertEqual(n, 3)
        self.assertEqual(left, Resources(50, 904, 5))
        self.assertEqual(per_task.count_in(Resources(350, 1000, 5)), 3)
        self.assertFalse(per_task.fits(left))
        self.assertEqual(Resources.new().count_in(left), (1 << 64) - 1)
        self.assertTrue(Resources.new().is_zero())

    def test_checked_arithmetic(self):
        a = Resources(1, 2, 3)
        self.assertIsNone(a.checked_sub(Resources(2, 0, 0)))
        self.assertEqual(a.saturating_sub(Resources(2, 1, 0)), Resources(0, 1, 3))
        self.assertIsNone(Resources((1 << 64) - 1, 0, 0).checked_add(a))
        self.assertEqual(a.checked_add(a), Resources(2, 4, 6))

    def test_bounds_of_new(self):
        Resources.new((1 << 64) - 1, 0, 0)
        for bad in (1 << 64, -1, 1.5):
            with self.assertRaises(ValueError):
                Resources.new(bad)

    def test_display(self):
        self.assertEqual(str(Resources(1500, 512, 0)), "cpus 1.5, mem 512 MiB, disk 0 MiB")
        self.assertEqual(str(Resources(2000, 1, 2)), "cpus 2, mem 1 MiB, disk 2 MiB")
        self.assertEqual(str(Resources(25, 0, 0)), "cpus 0.025, mem 0 MiB, disk 0 MiB")


class HelpersTest(unittest.TestCase):
    def test_refuse(self):
        self.assertEqual(wasmos.DEFAULT_REFUSE_SECONDS, 120.0)
        self.assertEqual(wasmos.refuse(-1).refuse_seconds, 0.0)
        self.assertEqual(wasmos.refuse(math.nan).refuse_seconds, 0.0)
        self.assertEqual(wasmos.refuse(5).refuse_seconds, 5.0)

    def test_terminal_states(self):
        self.assertTrue(wasmos.is_terminal(TaskState.LOST))
        self.assertFalse(wasmos.is_terminal(TaskState.UNREACHABLE))
        self.assertFalse(wasmos.is_terminal(TaskState.RUNNING))

    def test_wasm_task(self):
        t = wasmos.wasm_task("t1", "a1", Resources.cpu_mem(100, 32), "pi", "10 1", fuel=7)
        self.assertEqual(t.name, "t1")
        self.assertIsInstance(t.kind, wasmos.TaskKind_Wasm)
        self.assertEqual(t.kind.value.executor_id, "pi")
        self.assertEqual(t.kind.value.payload, b"10 1")
        self.assertEqual(t.kind.value.fuel, 7)
        self.assertIsNone(t.kind.value.timeout_seconds)
        c = wasmos.command_task("c", "a1", Resources.cpu_mem(1, 1), ["sleep", "1"])
        self.assertEqual(c.kind.value.argv, ["sleep", "1"])

    def test_describe_exception(self):
        self.assertEqual(wasmos.describe_exception(ValueError("bad input 42")), "ValueError: bad input 42")
        self.assertEqual(wasmos.describe_exception(KeyError()), "KeyError")


class Counter(wasmos.Executor):
    def __init__(self):
        self.n = 0

    def launch(self, task):
        if task.payload == b"fail":
            raise ValueError("asked to fail")
        if task.payload == b"oom":
            raise MemoryError()
        if task.payload == b"int":
            return 5
        self.n += 1
        return str(self.n)


class Args(wasmos.Scheduler):
    def __init__(self, args):
        if "bad" in args:
            raise ValueError("bad argument")
        self.args = args
        self.offers = []

    def resource_offers(self, offers):
        self.offers.extend(offers)

    def status_update(self, status):
        pass


class Incomplete(wasmos.Scheduler):
    def resource_offers(self, offers):
        pass


def task(payload):
    return wasmos.Task(task_id="t", executor_id="e", payload=payload)


class RuntimeTest(unittest.TestCase):
    def setUp(self):
        self.rec = Recorder()

    def tearDown(self):
        self.rec.restore()

    def test_executor_state_survives_between_tasks_and_errors(self):
        _, E = wasmos.export(scheduler=Args, executor=Counter)
        e = E()
        self.assertEqual(e.launch(task(b"")), b"1")
        with redirect_stderr(io.StringIO()) as err:
            with self.assertRaises(Err) as failed:
                E().launch(task(b"fail"))
        self.assertEqual(failed.exception.value, "ValueError: asked to fail")
        self.assertIn("Traceback", err.getvalue())
        # A new export object (componentize-py may make one per call) finds the same state.
        self.assertEqual(E().launch(task(b"")), b"2")
        # Not bytes: an error result naming the type.
        with redirect_stderr(io.StringIO()):
            with self.assertRaises(Err) as failed:
                E().launch(task(b"int"))
        self.assertIn("must return bytes or str, not int", failed.exception.value)

    def test_memory_error_is_not_turned_into_a_result(self):
        _, E = wasmos.export(scheduler=Args, executor=Counter)
        with self.assertRaises(MemoryError):
            E().launch(task(b"oom"))

    def test_init_once_and_a_failed_init_leaves_no_state(self):
        S, _ = wasmos.export(scheduler=Args, executor=Counter)
        with redirect_stderr(io.StringIO()):
            with self.assertRaises(Err) as failed:
                S().init(["bad"])
        self.assertEqual(failed.exception.value, "ValueError: bad argument")
        # Before a successful init, offers are declined (not hoarded) and the call logged.
        S().resource_offers([offer(1)])
        self.assertEqual(self.rec.calls[-1][0:2], ("decline", ["o1"]))
        self.assertEqual(self.rec.calls[-2][0], "log")
        S().init(["x"])
        with self.assertRaises(Err) as twice:
            S().init([])
        self.assertIn("twice", twice.exception.value)
        S().resource_offers([offer(2)])

    def test_an_incomplete_scheduler_fails_init_naming_the_method(self):
        S, _ = wasmos.export(scheduler=Incomplete, executor=Counter)
        with redirect_stderr(io.StringIO()):
            with self.assertRaises(Err) as failed:
                S().init([])
        self.assertIn("TypeError", failed.exception.value)
        self.assertIn("status_update", failed.exception.value)

    def test_callback_exceptions_propagate(self):
        class Raises(Args):
            def status_update(self, status):
                raise ValueError("bad input 42")

        S, _ = wasmos.export(scheduler=Raises, executor=Counter)
        S().init([])
        status = wasmos.TaskStatus("t", None, TaskState.RUNNING, "", None)
        with self.assertRaises(ValueError):
            S().status_update(status)

    def test_decline_all_declines_for_long_and_suppresses(self):
        S, _ = wasmos.export(scheduler=wasmos.DeclineAll, executor=Counter)
        S().init([])
        S().resource_offers([offer(1), offer(2)])
        name, ids, filters = self.rec.calls[0]
        self.assertEqual((name, ids), ("decline", ["o1", "o2"]))
        self.assertEqual(filters.refuse_seconds, 120.0)
        self.assertEqual(self.rec.calls[1], ("suppress",))

    def test_driver_wrappers(self):
        wasmos.driver.finish("done")
        wasmos.driver.finish(error="broken")
        self.assertEqual(self.rec.calls[0], ("finish", Ok("done")))
        self.assertEqual(self.rec.calls[1], ("finish", Err("broken")))

        def refused(*_):
            raise Err("offer o9 is unknown or no longer valid")

        imports.launch = refused
        with self.assertRaises(wasmos.DriverError) as e:
            wasmos.driver.launch(["o9"], [])
        self.assertIn("o9 is unknown", str(e.exception))

    def test_export_checks_its_arguments(self):
        with self.assertRaises(TypeError):
            wasmos.export(scheduler=Counter, executor=Counter)
        with self.assertRaises(TypeError):
            wasmos.export(scheduler=Args, executor=object)


if __name__ == "__main__":
    unittest.main()
