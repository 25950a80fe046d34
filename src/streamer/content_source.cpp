#include "streamer/content_source.hpp"

#include "core/error.hpp"
#include "core/file_read.hpp"
#include "core/hex.hpp"

#include <mbedtls/base64.h>

#include <cctype>

namespace openace::streamer {

namespace {

constexpr const char *kSelectors[] = {"content_id", "id", "infohash", "url", "magnet", "data"};

[[noreturn]] void bad(const std::string &param, const std::string &why)
{
    throw_errorf(Errc::INVAL, "streamer", "source", "parameter '{}': {}", param, why);
}

std::string read_local_file(const std::string &path, const std::string &origin)
{
    std::string data;
    const core::FileRead r = core::read_file(path, kMaxTransportFile, data);
    if (r.status == core::FileRead::Status::Unreadable)
        bad(origin, fmt::format("cannot read '{}': {}", path, r.error));
    if (r.status == core::FileRead::Status::TooLarge)
        bad(origin, fmt::format("'{}' is larger than {} bytes: not a transport file", path, kMaxTransportFile));
    return data;
}

} // namespace

Params params_of(const std::vector<std::pair<std::string, std::string>> &query)
{
    Params p;
    for (const auto &[k, v] : query)
        p.emplace(k, v);
    return p;
}

std::string ContentSource::hex() const
{
    return live ? live::to_hex(content_id) : core::to_hex(infohash.data(), infohash.size());
}

std::pair<std::string, std::string> pick_selector(const Params &params)
{
    for (const char *name : kSelectors)
        if (auto it = params.find(name); it != params.end())
            return *it;
    throw_error(Errc::INVAL, "streamer", "source",
                "missing parameter: one of content_id, id, infohash, url, magnet, data");
}

bool needs_fetch(const Params &params)
{
    auto [name, value] = pick_selector(params);
    return name == "url" && value.rfind("http://", 0) == 0;
}

std::optional<std::string> base64_decode(std::string_view text)
{
    // mbedTLS skips line breaks and spaces: refuse them, as documented.
    if (text.size() > 2 * kMaxTransportFile || text.find_first_of(" \t\r\n") != std::string_view::npos)
        return std::nullopt;
    std::string clean(text);
    while (clean.size() % 4 != 0)
        clean += '='; // padding is optional in URLs
    std::size_t n = 0;
    std::string out(clean.size() / 4 * 3 + 3, '\0');
    if (mbedtls_base64_decode(reinterpret_cast<unsigned char *>(out.data()), out.size(), &n,
                              reinterpret_cast<const unsigned char *>(clean.data()), clean.size()) != 0)
        return std::nullopt;
    out.resize(n);
    return out;
}

ContentSource classify_transport_file(std::string_view bytes, const std::string &origin)
{
    ContentSource s;
    std::string torrent_error;
    try {
        transport::Metainfo m = transport::parse_metainfo(bytes);
        s.infohash = m.infohash;
        s.trackers = m.trackers();
        s.name = m.name;
        s.meta = std::move(m);
        return s;
    } catch (const Error &e) {
        torrent_error = e.detail();
    }
    try {
        live::LiveDescriptor d = live::parse_descriptor(bytes);
        s.live = true;
        s.content_id = d.content_id();
        s.descriptor = std::string(bytes);
        s.name = d.name;
        return s;
    } catch (const Error &e) {
        bad(origin, fmt::format("not a transport file: as a .torrent: {}; as a live descriptor: {}", torrent_error,
                                e.detail()));
    }
}

void apply_file_index(ContentSource &s, const Params &params)
{
    auto it = params.find("_idx");
    if (it == params.end() || it->second.empty())
        return;
    const std::string &v = it->second;
    if (v.size() > 9 || v.find_first_not_of("0123456789") != std::string::npos)
        bad("_idx", fmt::format("expected a file index (an integer >= 0), got '{}'", v.substr(0, 32)));
    s.file_index = std::stoi(v);
}

ContentSource resolve_source(const Params &params, const IdTest &is_live, const IdTest &is_torrent)
{
    auto [name, value] = pick_selector(params);
    ContentSource s;
    if (name == "content_id" || name == "id") {
        try {
            s.content_id = live::parse_content_id(value);
        } catch (const Error &e) {
            bad(name, e.detail());
        }
        s.infohash = s.content_id;
        s.live = !(is_torrent && is_torrent(s.content_id));
    } else if (name == "infohash") {
        std::optional<transport::InfoHash> ih = transport::parse_infohash(value);
        if (!ih)
            bad(name, fmt::format("expected 40 hexadecimal digits (or 32 base32), got '{}'", value.substr(0, 64)));
        s.live = is_live && is_live(*ih);
        s.content_id = *ih;
        s.infohash = *ih;
    } else if (name == "magnet") {
        transport::Magnet m;
        try {
            m = transport::parse_magnet(value);
        } catch (const Error &e) {
            bad(name, e.detail());
        }
        s.infohash = m.infohash;
        s.trackers = m.trackers;
        s.name = m.name;
        for (const auto &p : m.peers) {
            try {
                s.peers.push_back(transport::parse_peer_address(p));
            } catch (const Error &) {
                // x.pe with a host name: not supported, skipped
            }
        }
    } else if (name == "data") {
        auto bytes = base64_decode(value);
        if (!bytes)
            bad(name, "not base64 (RFC 4648)");
        s = classify_transport_file(*bytes, "data");
    } else { // url
        if (value.rfind("http://", 0) == 0)
            bad(name, "an http:// URL is fetched by the caller (needs_fetch)");
        std::string path = value;
        if (path.rfind("file://", 0) == 0)
            path = path.substr(7);
        else if (path.find("://") != std::string::npos)
            bad(name, fmt::format("unsupported scheme in '{}' (http://, file:// or a local path)", value.substr(0, 64)));
        if (path.empty())
            bad(name, "empty path");
        s = classify_transport_file(read_local_file(path, name), name);
    }
    apply_file_index(s, params);
    return s;
}

} // namespace openace::streamer
