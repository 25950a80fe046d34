// Internal helpers around openace::Error (declared in the public engine.hpp).
#pragma once

#include <openace/engine.hpp>

#include <fmt/format.h>

namespace openace {

// throw_error(Errc::JOB, "job", "validate", "field 'priority': expected an integer")
[[noreturn]] inline void throw_error(Errc code, std::string component, std::string operation,
                                     const std::string &detail)
{
    throw Error(code, std::move(component), std::move(operation), detail);
}

template <class... Args>
[[noreturn]] void throw_errorf(Errc code, std::string component, std::string operation,
                               fmt::format_string<Args...> f, Args &&...args)
{
    throw Error(code, std::move(component), std::move(operation),
                fmt::format(f, std::forward<Args>(args)...));
}

} // namespace openace
