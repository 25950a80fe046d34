// openace._openace: the pybind11 binding of the C++ facade.  The public,
// Pythonic API (dicts in, dicts out) lives in python/openace/__init__.py; this
// module stays close to openace::Engine and passes JSON as text.
//
// Threading: every call that can block releases the GIL, and nothing here
// ever calls into Python from an engine thread — there is no Python wakeup
// callback; callers poll wakeup_fd() instead (select, asyncio add_reader).
#include <openace/engine.hpp>

#include <pybind11/pybind11.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>

namespace py = pybind11;

namespace {

// The Python class openace.Error (created in PYBIND11_MODULE, never freed);
// only used with the GIL held.
PyObject *g_error_type = nullptr;

// Builds an openace.Error instance: message = what(), plus the attributes
// name, code, component, operation and detail.
py::object make_error(const openace::Error &e)
{
    py::object exc = py::reinterpret_borrow<py::object>(g_error_type)(py::str(e.what()));
    exc.attr("name") = py::str(openace::error_name(e.code()));
    exc.attr("code") = py::int_(int(e.code()));
    exc.attr("component") = py::str(e.component());
    exc.attr("operation") = py::str(e.operation());
    exc.attr("detail") = py::str(e.detail());
    return exc;
}

// Destroying an engine shuts it down, which joins the loop thread: do it
// without the GIL so other Python threads keep running meanwhile.  The
// engine threads never need the GIL, so holding it would not deadlock, only
// stall the interpreter.
struct EngineDeleter {
    void operator()(openace::Engine *e) const
    {
        if (e == nullptr)
            return;
        if (PyGILState_Check()) {
            py::gil_scoped_release nogil;
            delete e;
        } else {
            delete e;
        }
    }
};
using EngineHolder = std::unique_ptr<openace::Engine, EngineDeleter>;

// Waits are cut into slices so that Ctrl-C (and any other signal handler)
// interrupts a long wait_event instead of hanging until an event arrives.
constexpr double kWaitSlice_s = 0.25;

py::object wait_event(openace::Engine &engine, double timeout_s)
{
    const bool forever = timeout_s < 0;
    double left = timeout_s;
    for (;;) {
        double slice = forever ? kWaitSlice_s : std::min(left, kWaitSlice_s);
        std::optional<openace::Event> ev;
        {
            py::gil_scoped_release nogil;
            ev = engine.wait_event(slice);
        }
        if (ev)
            return py::make_tuple(int(ev->id), ev->error, ev->final, ev->job_id,
                                  py::str(ev->json));
        if (!forever) {
            left -= slice;
            if (left <= 0)
                return py::none();
        }
        if (PyErr_CheckSignals() != 0)
            throw py::error_already_set();
    }
}

} // namespace

PYBIND11_MODULE(_openace, m)
{
    m.doc() = "Low-level binding of the OpenAce engine (use the openace package instead)";
    m.attr("__version__") = openace::version_string();

    // openace.Error: a plain Exception subclass whose instances carry the
    // C error name and code, the component and the operation.
    py::exception<openace::Error> error_type(m, "Error", PyExc_Exception);
    // One reference kept for the life of the process: a static py::object
    // would be released after the interpreter is gone.
    g_error_type = error_type.inc_ref().ptr();
    error_type.attr("__module__") = py::str("openace");
    error_type.attr("__doc__") =
        "An OpenAce engine error.\n\n"
        "Attributes: name (the C error name, e.g. 'OPENACE_EJOB'), code (the negative\n"
        "OPENACE_E* value), component ('config', 'job', ...), operation ('parse',\n"
        "'submit', ...) and detail (the message without component and operation).";
    error_type.attr("name") = py::str("OPENACE_EUNKNOWN");
    error_type.attr("code") = py::int_(0);
    error_type.attr("component") = py::str("");
    error_type.attr("operation") = py::str("");
    error_type.attr("detail") = py::str("");
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p)
                std::rethrow_exception(p);
        } catch (const openace::Error &e) {
            py::object exc = make_error(e);
            PyErr_SetObject(g_error_type, exc.ptr());
        }
    });

    m.def(
        "make_error",
        [](int code, std::string component, std::string operation, const std::string &detail) {
            return make_error(openace::Error(openace::Errc(code), std::move(component),
                                             std::move(operation), detail));
        },
        py::arg("code"), py::arg("component"), py::arg("operation"), py::arg("detail"),
        "Builds (does not raise) an Error the way the engine would.");
    m.def("api_version", [] { return openace_api_version(); },
          "OPENACE_API_VERSION of the loaded library: (major << 16) | minor.");
    m.def("error_name", [](int code) { return openace_error_name(code); },
          py::arg("code"), "Symbolic name of an error code ('OPENACE_EJOB').");
    m.def("error_string", [](int code) { return openace_error_string(code); },
          py::arg("code"), "Message of an error code ('invalid job').");

    m.attr("API_VERSION_MAJOR") = OPENACE_API_VERSION_MAJOR;
    m.attr("API_VERSION_MINOR") = OPENACE_API_VERSION_MINOR;

    m.attr("EVENT_NONE") = int(OPENACE_EVENT_NONE);
    m.attr("EVENT_JOB_STATE") = int(OPENACE_EVENT_JOB_STATE);
    m.attr("EVENT_JOB_PROGRESS") = int(OPENACE_EVENT_JOB_PROGRESS);
    m.attr("EVENT_ENGINE_STATE") = int(OPENACE_EVENT_ENGINE_STATE);
    m.attr("EVENT_OVERFLOW") = int(OPENACE_EVENT_OVERFLOW);
    m.attr("EVENT_LOG") = int(OPENACE_EVENT_LOG);
    m.attr("EVENT_SHUTDOWN") = int(OPENACE_EVENT_SHUTDOWN);

#define OPENACE__PY_ERR(name, value, msg) m.attr("OPENACE_E" #name) = int(value);
    OPENACE_ERRNO_MAP(OPENACE__PY_ERR)
#undef OPENACE__PY_ERR

    using gil_release = py::call_guard<py::gil_scoped_release>;
    py::class_<openace::Engine, EngineHolder>(m, "Engine",
                                              "One engine: loop thread, five internal engines, "
                                              "HTTP API.  JSON in and out as text.")
        .def(py::init([](const std::string &config) {
                 // Starting binds sockets and starts threads: no GIL.  The
                 // holder is handed back to pybind11 with the GIL held again.
                 py::gil_scoped_release nogil;
                 return EngineHolder(new openace::Engine(config));
             }),
             py::arg("config") = std::string(),
             "Starts an engine from TOML or JSON text ('' for the defaults).  Blocking.")
        .def("submit", [](openace::Engine &e, const std::string &job) { return e.submit_job(job); },
             py::arg("job_json"), gil_release(), "Queues a job (JSON text); returns its id.")
        .def("cancel", &openace::Engine::cancel_job, py::arg("job_id"), gil_release(),
             "Cancels a job in any state.  Blocking.")
        .def("wait_event", &wait_event, py::arg("timeout") = -1.0,
             "Next event as (id, error, final, job_id, json) or None on timeout.  "
             "timeout 0 polls, < 0 waits forever.  Releases the GIL while waiting.")
        .def("wakeup_fd", &openace::Engine::wakeup_fd,
             "A file descriptor readable while events are pending.  Owned by the engine.")
        .def("stats", &openace::Engine::stats_json, gil_release(),
             "Statistics as JSON text.  Blocking.")
        .def(
            "logs",
            [](const openace::Engine &e, const std::string &filter) { return e.logs_json(filter); },
            py::arg("filter_json") = std::string("{}"), gil_release(),
            "Log entries matching a JSON filter, as JSON text.")
        .def("http_address", &openace::Engine::http_address, gil_release(),
             "The address the HTTP API listens on; '' while the streamer is stopped.")
        .def(
            "control",
            [](openace::Engine &e, const std::string &engine, const std::string &action) {
                e.control(engine, action);
            },
            py::arg("engine"), py::arg("action"), gil_release(),
            "start|stop|pause|resume|restart one internal engine.  Blocking.")
        .def("shutdown", &openace::Engine::shutdown, gil_release(),
             "Stops jobs and engines and joins the loop thread.  Blocking, idempotent.");
}
