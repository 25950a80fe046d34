// Core side of the media module boundary: finds and loads libopenace_media.so.
#include "media/media_api.hpp"

#include "core/error.hpp"

#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <mutex>

#ifndef OPENACE_MEDIA_INSTALL_PATH
#define OPENACE_MEDIA_INSTALL_PATH ""
#endif
#ifndef OPENACE_MEDIA_BUILD_PATH
#define OPENACE_MEDIA_BUILD_PATH ""
#endif

namespace openace::media {

namespace {

constexpr const char *kModuleName = "libopenace_media.so";

std::mutex g_mu;
std::atomic<const MediaApi *> g_api{nullptr};
std::string g_path;

std::vector<std::string> candidates()
{
    std::vector<std::string> out;
    if (const char *env = std::getenv("OPENACE_MEDIA_MODULE"); env && *env)
        out.emplace_back(env);
    // Beside whatever file holds this code: libopenace.so, or the program
    // (CLI, tests) or Python extension that linked the static library.
    Dl_info info{};
    if (dladdr(reinterpret_cast<void *>(&media_api), &info) && info.dli_fname) {
        auto dir = std::filesystem::path(info.dli_fname).parent_path();
        out.push_back((dir / kModuleName).string());
    }
    if (*OPENACE_MEDIA_INSTALL_PATH)
        out.emplace_back(OPENACE_MEDIA_INSTALL_PATH);
    if (*OPENACE_MEDIA_BUILD_PATH)
        out.emplace_back(OPENACE_MEDIA_BUILD_PATH);
    return out;
}

} // namespace

const MediaApi &media_api()
{
    if (auto *api = g_api.load(std::memory_order_acquire))
        return *api;
    std::lock_guard lk(g_mu);
    if (auto *api = g_api.load(std::memory_order_acquire))
        return *api;
    std::string tried;
    for (auto &path : candidates()) {
        if (!std::filesystem::exists(path)) {
            tried += fmt::format("{}{} (absent)", tried.empty() ? "" : ", ", path);
            continue;
        }
        void *h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            const char *e = ::dlerror();
            tried += fmt::format("{}{} ({})", tried.empty() ? "" : ", ", path, e ? e : "dlopen failed");
            continue;
        }
        using Entry = const MediaApi *(*)();
        auto entry = reinterpret_cast<Entry>(::dlsym(h, "openace_media_api_v1"));
        const MediaApi *api = entry ? entry() : nullptr;
        if (!api || api->version != kMediaApiVersion || api->size != sizeof(MediaApi)) {
            tried += fmt::format("{}{} (not a matching OpenAce media module)", tried.empty() ? "" : ", ", path);
            ::dlclose(h);
            continue;
        }
        // Never unloaded: FFmpeg keeps global state for the process lifetime.
        g_path = path;
        g_api.store(api, std::memory_order_release);
        return *api;
    }
    throw_errorf(Errc::UNSUPPORTED, "media", "load",
                 "cannot load the media module {}: tried {}; set OPENACE_MEDIA_MODULE to its path",
                 kModuleName, tried.empty() ? "nothing" : tried);
}

bool media_loaded() noexcept
{
    return g_api.load(std::memory_order_acquire) != nullptr;
}

std::string media_module_path()
{
    std::lock_guard lk(g_mu);
    return g_path;
}

} // namespace openace::media
