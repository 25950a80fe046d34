"""The openace Python package against a real engine (loop thread, five
internal engines, HTTP API)."""

import json
import select
import threading
import time
import urllib.request

import pytest

import openace
from conftest import CONFIG, make_config, wait_final


def test_package_exposes_version_error_and_event_ids():
    assert openace.__version__.count(".") == 2
    assert all(p.isdigit() for p in openace.__version__.split("."))
    assert issubclass(openace.Error, Exception)
    assert openace.Error.__module__ == "openace"
    assert openace.api_version() >> 16 == openace._openace.API_VERSION_MAJOR
    assert openace.EVENT_JOB_STATE == 1 and openace.EVENT_SHUTDOWN == 6
    assert openace.error_name(openace._openace.OPENACE_EJOB) == "OPENACE_EJOB"


def test_probe_job_reports_queued_running_done_and_its_result(engine):
    job = engine.submit({"type": "probe"})
    assert isinstance(job, int) and job > 0
    states = []
    final = wait_final(engine, job, states=states)
    assert states == ["queued", "running", "done"]
    result = final["result"]
    assert result["version"] == openace.__version__
    libavformat = result["ffmpeg"]["libavformat"]
    assert isinstance(libavformat, str) and len(libavformat) >= 5
    assert isinstance(result["hardware_devices"], list)


def test_events_are_dicts_with_name_job_final_error_and_parsed_data(engine):
    job = engine.submit('{"type":"probe","hardware":false}')  # JSON text works too
    while True:
        ev = engine.wait_event(10.0)
        assert ev is not None, "no event within 10 s"
        if ev["event"] == "job_state" and ev["job_id"] == job:
            break
    assert set(ev) == {"event", "job_id", "final", "error", "data"}
    assert ev["final"] is False and ev["error"] == 0
    assert ev["data"]["state"] == "queued" and ev["data"]["type"] == "probe"


def test_wait_event_returns_none_on_timeout(engine):
    while engine.wait_event(0) is not None:  # drain the start-up events
        pass
    t0 = time.monotonic()
    assert engine.wait_event(0.2) is None
    assert time.monotonic() - t0 >= 0.15


def test_run_returns_the_result_of_a_done_job(engine):
    result = engine.run({"type": "probe", "hardware": False}, timeout=60)
    assert result["version"] == openace.__version__
    assert result["hardware_devices"] == []


def test_run_keeps_events_of_other_jobs_for_wait_event(engine):
    other = engine.submit({"type": "probe", "hardware": False})
    engine.run({"type": "probe", "hardware": False})
    assert wait_final(engine, other)["state"] == "done"


def test_run_raises_ecancelled_when_the_job_is_cancelled():
    with openace.Engine(make_config(log_level="debug")) as engine:
        engine.control("main", "pause")  # the job stays queued
        outcome = {}

        def runner():
            try:
                outcome["result"] = engine.run({"type": "probe", "hardware": False})
            except openace.Error as err:
                outcome["error"] = err

        t = threading.Thread(target=runner)
        t.start()
        job_id = None
        deadline = time.monotonic() + 10
        while job_id is None and time.monotonic() < deadline:
            entries = engine.logs(component="job", text="queued probe job")["entries"]
            job_id = entries[-1]["job_id"] if entries else None
            time.sleep(0.01)
        assert job_id is not None
        engine.cancel(job_id)
        t.join(10)
        assert not t.is_alive()
        err = outcome.get("error")
        assert err is not None, outcome
        assert err.name == "OPENACE_ECANCELLED"
        assert err.code == openace._openace.OPENACE_ECANCELLED
        assert str(job_id) in str(err)


def test_run_times_out_with_etimeout_and_cancels_the_job(engine):
    engine.control("main", "pause")
    with pytest.raises(openace.Error) as info:
        engine.run({"type": "probe", "hardware": False}, timeout=0.3)
    assert info.value.name == "OPENACE_ETIMEOUT"
    stats = engine.stats()
    assert stats["jobs"]["cancelled"] == 1 and stats["jobs"]["queued"] == 0


def test_bad_job_raises_ejob_naming_the_field(engine):
    with pytest.raises(openace.Error) as info:
        engine.submit({"type": "probe", "priority": "high"})
    err = info.value
    assert err.name == "OPENACE_EJOB"
    assert err.code == openace._openace.OPENACE_EJOB
    assert err.component == "job"
    assert "priority" in str(err)
    with pytest.raises(openace.Error) as info:
        engine.run({"type": "no-such-kind"})
    assert info.value.name == "OPENACE_EJOB" and "type" in str(info.value)


def test_bad_config_raises_econfig_naming_key_and_line():
    text = '[engine]\nhttp_address = "127.0.0.1:0"\nmax_peers = "many"\n'
    with pytest.raises(openace.Error) as info:
        openace.Engine(text)
    err = info.value
    assert err.name == "OPENACE_ECONFIG"
    assert err.code == openace._openace.OPENACE_ECONFIG
    assert "engine.max_peers" in str(err)
    assert ":3" in str(err)


def test_config_as_dict_json_text_or_toml_text_all_start_an_engine():
    toml = '[engine]\nhttp_address = "127.0.0.1:0"\n[logging]\nconsole = false\n'
    for cfg in (CONFIG, json.dumps(CONFIG), toml):
        with openace.Engine(cfg) as e:
            assert e.http_address().startswith("127.0.0.1:")
    with pytest.raises(TypeError):
        openace.Engine(42)


def test_stats_report_the_five_engines_running(engine):
    stats = engine.stats()
    for name in ("main", "segmenter", "transport", "live", "streamer"):
        assert stats["engines"][name]["state"] == "running", name
    assert stats["version"] == openace.__version__
    assert stats["process"]["rss_bytes"] > 1_000_000


def test_logs_filter_by_component_and_job():
    with openace.Engine(make_config(log_level="debug")) as engine:
        job = engine.submit({"type": "probe", "hardware": False})
        wait_final(engine, job)
        by_component = engine.logs(component="job")
        assert by_component["entries"], "the job component logged nothing"
        assert {e["component"] for e in by_component["entries"]} == {"job"}
        by_job = engine.logs(job_id=job)
        assert by_job["entries"] and all(e["job_id"] == job for e in by_job["entries"])
        assert len(engine.logs(limit=1)["entries"]) == 1
        with pytest.raises(openace.Error) as info:
            engine.logs(level="loud")
        assert info.value.component == "log"


def test_wakeup_fd_becomes_readable_after_submit(engine):
    while engine.wait_event(0) is not None:
        pass
    fd = engine.wakeup_fd()
    assert isinstance(fd, int) and fd >= 0
    engine.submit({"type": "probe", "hardware": False})
    readable, _, _ = select.select([fd], [], [], 10.0)
    assert readable == [fd]
    assert engine.wait_event(0) is not None


def test_context_manager_shuts_down_and_later_calls_raise_eshutdown():
    with openace.Engine(CONFIG) as engine:
        engine.submit({"type": "probe"})  # still queued or running at exit
    for call in (lambda: engine.submit({"type": "probe"}), engine.stats,
                 engine.http_address, lambda: engine.control("main", "pause")):
        with pytest.raises(openace.Error) as info:
            call()
        assert info.value.name == "OPENACE_ESHUTDOWN"
    engine.shutdown()  # idempotent
    names = []
    while True:
        ev = engine.wait_event(0)
        if ev is None:
            break
        names.append(ev["event"])
    assert names[-1] == "shutdown"


def test_wait_event_releases_the_gil(engine):
    while engine.wait_event(0) is not None:
        pass
    count = 0
    stop = threading.Event()

    def spin():
        nonlocal count
        while not stop.is_set():
            count += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        time.sleep(0.05)
        before = count
        t0 = time.monotonic()
        assert engine.wait_event(0.5) is None
        waited = time.monotonic() - t0
        during = count - before
    finally:
        stop.set()
        t.join()
    assert waited >= 0.4
    # With the GIL held the counter would stand still for the whole wait.
    assert during > 10_000


def test_http_get_version_answers_through_urllib(engine):
    address = engine.http_address()
    host, _, port = address.rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0
    url = f"http://{address}/webui/api/service?method=get_version"
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        body = json.loads(resp.read())
    assert body["error"] is None
    assert body["result"]["platform"] == "linux"
    assert body["result"]["openace_version"] == openace.__version__


def test_cancel_of_an_ended_job_raises_estate(engine):
    job = engine.submit({"type": "probe", "hardware": False})
    assert wait_final(engine, job)["state"] == "done"
    with pytest.raises(openace.Error) as info:
        engine.cancel(job)
    assert info.value.name == "OPENACE_ESTATE"
    with pytest.raises(openace.Error) as info:
        engine.cancel(10**9)
    assert info.value.name == "OPENACE_ENOTFOUND"


def test_control_restarts_one_engine(engine):
    engine.control("segmenter", "restart")
    assert engine.stats()["engines"]["segmenter"]["state"] == "running"
    with pytest.raises(openace.Error):
        engine.control("nonesuch", "start")
