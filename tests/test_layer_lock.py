"""The layer installs exactly what the tests ran with (local_stack/layer_lock.py)."""

from __future__ import annotations

from packaging.utils import canonicalize_name

from local_stack import layer_lock


def test_the_layer_lock_pins_the_whole_closure_at_the_tested_versions() -> None:
    """requirements.txt is what the generator writes now: the closure of requirements.in on
    Lambda's runtime, each at constraints.txt's version. A new dependency (direct or pulled in
    by an upgrade) or a version bump in constraints.txt makes it stale."""
    text = layer_lock.LOCK.read_text()
    assert text == layer_lock.render(), "stale: python -m local_stack.layer_lock"
    locked = {canonicalize_name(r.name): str(r.specifier) for r in layer_lock.read_requirements(layer_lock.LOCK)}
    constraints = layer_lock.pinned_versions()
    assert all(spec == f"=={constraints[name]}" for name, spec in locked.items()), locked
    direct = {canonicalize_name(r.name) for r in layer_lock.read_requirements(layer_lock.DIRECT)}
    assert direct <= set(locked)
    # What the direct dependencies pull in is pinned too (botocore under boto3, pydantic-core
    # under pydantic), not only what requirements.in names.
    assert {"botocore", "pydantic-core", "jmespath", "typing-extensions"} <= set(locked) - direct


def test_markers_are_evaluated_for_lambda_not_for_this_machine() -> None:
    from packaging.markers import Marker

    assert layer_lock._applies(Marker('python_version >= "3.12"'), set())
    assert not layer_lock._applies(Marker('sys_platform == "win32"'), set())
    assert layer_lock._applies(Marker('extra == "tracer"'), {"tracer"})
    assert not layer_lock._applies(Marker('extra == "tracer"'), set())
