// Error codes and the Error exception, generated from OPENACE_ERRNO_MAP.
#include <openace/engine.hpp>

#include <fmt/format.h>

namespace openace {

const char *error_name(Errc code) noexcept
{
    switch (code) {
    case Errc::OK: return "OPENACE_OK";
#define OPENACE__NAME(name, value, msg) \
    case Errc::name: return "OPENACE_E" #name;
        OPENACE_ERRNO_MAP(OPENACE__NAME)
#undef OPENACE__NAME
    }
    return "OPENACE_EUNKNOWN";
}

const char *error_message(Errc code) noexcept
{
    switch (code) {
    case Errc::OK: return "success";
#define OPENACE__MSG(name, value, msg) \
    case Errc::name: return msg;
        OPENACE_ERRNO_MAP(OPENACE__MSG)
#undef OPENACE__MSG
    }
    return "unknown error";
}

static std::string format_error(Errc code, const std::string &component,
                                const std::string &operation, const std::string &detail)
{
    // "config: parse: openace.toml:3: unknown key 'engine.foo'"
    std::string out = component;
    if (!operation.empty())
        out += (out.empty() ? "" : ": ") + operation;
    out += (out.empty() ? "" : ": ");
    out += detail.empty() ? std::string(error_message(code)) : detail;
    return out;
}

Error::Error(Errc code, std::string component, std::string operation, const std::string &detail)
    : std::runtime_error(format_error(code, component, operation, detail)),
      code_(code), component_(std::move(component)), operation_(std::move(operation)),
      detail_(detail.empty() ? std::string(error_message(code)) : detail)
{
}

} // namespace openace
