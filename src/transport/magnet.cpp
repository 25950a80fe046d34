#include "transport/magnet.hpp"

#include "net/url.hpp"

#include "core/error.hpp"
#include "core/hex.hpp"

#include <optional>

namespace openace::transport {

namespace {

// dn, tr and x.pe are form-encoded ('+' is a space); a bad escape names the
// parameter.
std::string pct_decode(std::string_view s, std::string_view param)
{
    auto out = net::percent_decode(s, true);
    if (!out)
        throw_errorf(Errc::INVAL, "magnet", "parse", "parameter '{}': bad percent escape", param);
    return std::move(*out);
}

std::optional<InfoHash> parse_hex(std::string_view s)
{
    return core::from_hex<20>(s);
}

std::optional<InfoHash> parse_base32(std::string_view s)
{
    InfoHash h{};
    std::uint64_t acc = 0;
    int bits = 0;
    std::size_t o = 0;
    for (char c : s) {
        int v;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a';
        else if (c >= '2' && c <= '7')
            v = c - '2' + 26;
        else
            return std::nullopt;
        acc = (acc << 5) | static_cast<std::uint64_t>(v);
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            h[o++] = static_cast<std::uint8_t>((acc >> bits) & 0xff);
        }
    }
    return h; // 32 chars * 5 = 160 bits = 20 bytes exactly
}

bool iequal_prefix(std::string_view s, std::string_view prefix)
{
    if (s.size() < prefix.size())
        return false;
    for (std::size_t i = 0; i < prefix.size(); ++i) {
        char a = s[i];
        if (a >= 'A' && a <= 'Z')
            a = static_cast<char>(a - 'A' + 'a');
        if (a != prefix[i])
            return false;
    }
    return true;
}

} // namespace

std::optional<InfoHash> parse_infohash(std::string_view text)
{
    if (text.size() == 40)
        return parse_hex(text);
    if (text.size() == 32)
        return parse_base32(text);
    return std::nullopt;
}

Magnet parse_magnet(std::string_view uri)
{
    if (!iequal_prefix(uri, "magnet:"))
        throw_errorf(Errc::INVAL, "magnet", "parse", "not a magnet URI (expected 'magnet:?')");
    std::string_view rest = uri.substr(7);
    if (rest.empty() || rest[0] != '?')
        throw_errorf(Errc::INVAL, "magnet", "parse", "missing '?' after 'magnet:'");
    rest.remove_prefix(1);
    if (auto hash = rest.find('#'); hash != std::string_view::npos)
        rest = rest.substr(0, hash);

    Magnet m;
    bool have_xt = false;
    std::string bad_xt;
    while (!rest.empty()) {
        std::size_t amp = rest.find('&');
        std::string_view part = rest.substr(0, amp);
        rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
        if (part.empty())
            continue;
        std::size_t eq = part.find('=');
        std::string_view key = part.substr(0, eq);
        std::string_view raw = eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1);
        // Numbered variants (xt.1, tr.2) are accepted as their base name.
        std::string_view base = key;
        if (auto dot = key.find('.'); dot != std::string_view::npos && key != "x.pe")
            base = key.substr(0, dot);
        if (base == "xt") {
            std::string val = pct_decode(raw, "xt");
            if (have_xt)
                continue;
            if (iequal_prefix(val, "urn:btih:")) {
                std::string_view h = std::string_view(val).substr(9);
                std::optional<InfoHash> ih = parse_infohash(h);
                if (ih) {
                    m.infohash = *ih;
                    have_xt = true;
                } else {
                    bad_xt = fmt::format("'{}' is not 40 hex or 32 base32 characters", h);
                }
            }
        } else if (base == "dn") {
            if (m.name.empty())
                m.name = pct_decode(raw, "dn");
        } else if (base == "tr") {
            std::string t = pct_decode(raw, "tr");
            if (!t.empty())
                m.trackers.push_back(std::move(t));
        } else if (key == "x.pe") {
            std::string p = pct_decode(raw, "x.pe");
            if (!p.empty())
                m.peers.push_back(std::move(p));
        }
    }
    if (!have_xt) {
        if (!bad_xt.empty())
            throw_errorf(Errc::INVAL, "magnet", "parse", "parameter 'xt': urn:btih: value {}", bad_xt);
        throw_errorf(Errc::INVAL, "magnet", "parse", "parameter 'xt': missing (need urn:btih:)");
    }
    return m;
}

std::string to_hex(const InfoHash &infohash)
{
    return core::to_hex(infohash.data(), infohash.size());
}

std::string to_magnet(const InfoHash &infohash, std::string_view name,
                      const std::vector<std::string> &trackers)
{
    std::string s = "magnet:?xt=urn:btih:" + to_hex(infohash);
    if (!name.empty()) {
        s += "&dn=";
        s += net::percent_encode(name);
    }
    for (const auto &t : trackers) {
        s += "&tr=";
        s += net::percent_encode(t);
    }
    return s;
}

} // namespace openace::transport
