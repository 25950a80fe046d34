#include "net/url.hpp"

#include "core/hex.hpp"

namespace openace::net {

namespace {

bool is_unreserved(unsigned char c) noexcept
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

std::string decode_or_raw(std::string_view s)
{
    if (auto d = percent_decode(s, true))
        return std::move(*d);
    return std::string(s);
}

} // namespace

std::optional<std::string> percent_decode(std::string_view s, bool plus_as_space)
{
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == '%') {
            if (s.size() - i < 3)
                return std::nullopt;
            int hi = core::hex_digit(s[i + 1]);
            int lo = core::hex_digit(s[i + 2]);
            if (hi < 0 || lo < 0)
                return std::nullopt;
            out.push_back(static_cast<char>(hi * 16 + lo));
            i += 2;
        } else if (c == '+' && plus_as_space) {
            out.push_back(' ');
        } else {
            out.push_back(c);
        }
    }
    return out;
}

std::string percent_encode(std::string_view s, std::string_view safe)
{
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(s.size());
    for (char ch : s) {
        auto c = static_cast<unsigned char>(ch);
        if (is_unreserved(c) || (c != '%' && safe.find(ch) != std::string_view::npos)) {
            out.push_back(ch);
        } else {
            out.push_back('%');
            out.push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 15]);
        }
    }
    return out;
}

QueryParams parse_query(std::string_view query, size_t max_pairs)
{
    QueryParams out;
    if (!query.empty() && query.front() == '?')
        query.remove_prefix(1);
    while (!query.empty() && out.size() < max_pairs) {
        size_t amp = query.find('&');
        std::string_view seg = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        if (seg.empty())
            continue;
        size_t eq = seg.find('=');
        if (eq == std::string_view::npos)
            out.emplace_back(decode_or_raw(seg), std::string());
        else
            out.emplace_back(decode_or_raw(seg.substr(0, eq)), decode_or_raw(seg.substr(eq + 1)));
    }
    return out;
}

std::optional<std::string> query_value(const QueryParams &params, std::string_view name)
{
    for (const auto &[k, v] : params)
        if (k == name)
            return v;
    return std::nullopt;
}

std::string build_query(const QueryParams &params)
{
    std::string out;
    for (const auto &[k, v] : params) {
        if (!out.empty())
            out.push_back('&');
        out += percent_encode(k);
        out.push_back('=');
        out += percent_encode(v);
    }
    return out;
}

TargetParts split_target(std::string_view target)
{
    if (target == "*")
        return {target, {}};
    if (size_t hash = target.find('#'); hash != std::string_view::npos)
        target = target.substr(0, hash);
    if (target.empty() || target.front() != '/') {
        // absolute-form: skip "scheme://authority"
        if (size_t scheme = target.find("://"); scheme != std::string_view::npos) {
            std::string_view rest = target.substr(scheme + 3);
            size_t start = rest.find_first_of("/?");
            if (start == std::string_view::npos)
                return {"/", {}};
            target = rest.substr(start);
            if (target.front() == '?') {
                return {"/", target.substr(1)};
            }
        }
    }
    size_t q = target.find('?');
    if (q == std::string_view::npos)
        return {target, {}};
    return {target.substr(0, q), target.substr(q + 1)};
}

} // namespace openace::net
