"""The local session's JVM options (the featurize stage's JIT cost). No Spark session started."""

from __future__ import annotations

from fruitspark import session


def _java_options(monkeypatch, value: str | None, log_level: str | None = None) -> str:
    if value is None:
        monkeypatch.delenv("FRUITSPARK_JVM_OPTIONS", raising=False)
    else:
        monkeypatch.setenv("FRUITSPARK_JVM_OPTIONS", value)
    builder = session._local_builder("local[1]", "test", log_level, {})
    return builder._options.get("spark.driver.extraJavaOptions", "")


def test_local_jvm_stops_the_jit_at_c1_unless_told(monkeypatch):
    """C1 by default (a fixed ~14 s of C2 compiling saved per run); the variable replaces it."""
    assert session.JVM_OPTIONS in _java_options(monkeypatch, None)
    assert "log4j2.configurationFile" in _java_options(monkeypatch, None)
    assert session.JVM_OPTIONS not in _java_options(monkeypatch, "")
    chosen = _java_options(monkeypatch, "-Xss4m", log_level="INFO")
    assert chosen == f"-Xss4m {session.netlib_options()}".strip()


def test_local_session_lowers_case_without_icu(monkeypatch):
    """ICU's case mapping costs a fixed ~1.5 s of JVM CPU; a caller's conf still wins."""
    builder = session._local_builder("local[1]", "test", None, {})
    assert builder._options["spark.sql.icu.caseMappings.enabled"] == "false"
    mine = session._local_builder(
        "local[1]", "t", None, {"spark.sql.icu.caseMappings.enabled": "true"}
    )
    assert mine._options["spark.sql.icu.caseMappings.enabled"] == "true"


def test_netlib_looks_only_for_native_libraries_the_machine_has(monkeypatch):
    """Without a system BLAS, netlib's JNI would print a dlopen failure in every evaluate."""
    monkeypatch.setattr(session.ctypes.util, "find_library", lambda name: None)
    options = _java_options(monkeypatch, None)
    for name in session.NETLIB:
        assert f"-Ddev.ludovic.netlib.{name}.allowNative=false" in options
    found = {"blas": "libblas.so.3"}
    monkeypatch.setattr(session.ctypes.util, "find_library", found.get)
    options = _java_options(monkeypatch, "")
    assert "netlib.blas.allowNative" not in options and "netlib.lapack.allowNative" in options
