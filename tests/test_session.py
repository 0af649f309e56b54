"""The local session's JVM options (the featurize stage's JIT cost). No Spark session started."""

from __future__ import annotations

from fruitspark import session


def _java_options(
    monkeypatch, value: str | None, log_level: str | None = None, jit: session.Jit = "c1"
) -> str:
    if value is None:
        monkeypatch.delenv("FRUITSPARK_JVM_OPTIONS", raising=False)
    else:
        monkeypatch.setenv("FRUITSPARK_JVM_OPTIONS", value)
    builder = session._local_builder("local[1]", "test", log_level, {}, jit)
    return builder._options.get("spark.driver.extraJavaOptions", "")


def test_a_run_stops_the_jit_at_c1_other_sessions_keep_c2_unless_told(monkeypatch):
    """C1 for ``fruitspark run`` (a fixed ~14 s of C2 compiling saved); tiered, with C2, for
    sessions that may run Spark ML (its Vector API code is 20-50x slower under C1); the
    variable replaces either."""
    c1 = session.JVM_OPTIONS["c1"]
    assert "TieredStopAtLevel=1" in c1 and c1 in _java_options(monkeypatch, None)
    assert "TieredStopAtLevel" not in _java_options(monkeypatch, None, jit="tiered")
    assert "log4j2.configurationFile" in _java_options(monkeypatch, None)
    assert c1 not in _java_options(monkeypatch, "")
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


def test_netlib_looks_only_for_native_libraries_the_machine_has(monkeypatch, tmp_path):
    """Without a system BLAS, netlib's JNI would print a dlopen failure in every evaluate; a
    library the loader would find (here on LD_LIBRARY_PATH) is left for netlib to load."""
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    cached = session._loadable_libraries()
    before = session.netlib_options()
    for name, soname in session.NETLIB.items():
        assert (f"netlib.{name}.allowNative=false" in before) == (soname not in cached)
    assert before in _java_options(monkeypatch, None)
    (tmp_path / "libblas.so.3").write_bytes(b"")
    monkeypatch.setenv("LD_LIBRARY_PATH", f"{tmp_path}:/no/such/folder")
    after = session.netlib_options()
    assert "netlib.blas.allowNative" not in after
    assert ("netlib.lapack.allowNative" in after) == ("netlib.lapack.allowNative" in before)
